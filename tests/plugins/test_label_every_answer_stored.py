"""``label`` against a counting server: its explain and score
stages share one provider, each stage in its own event loop; every answer the server
sent must reach the store, none paid for and then dropped."""

from __future__ import annotations

import re

import pytest
from hostile_server import HostileServer, answer
from llm_fixtures import fill

import featurelens


def _answer_everything(n: int, path: str, headers: dict, body: dict) -> tuple:
    """Explanations for explain prompts, a 0/1 list as long as the examples for detection."""
    last = (body.get("messages") or [{}])[-1].get("content", "")
    if isinstance(last, list):
        last = " ".join(block.get("text", "") for block in last)
    shown = len(re.findall(r"<example \d+>", last))
    if shown:
        return answer(path, "[" + ",".join("1" if i % 2 else "0" for i in range(shown)) + "]")
    return answer(path, "Explanation: numbers")


@pytest.fixture
def server():
    running = HostileServer(_answer_everything).start()
    yield running
    running.stop()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_label_records_every_answer_the_server_sent_in_both_stages(cli, store_path, server, monkeypatch,
                                                                  provider):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-label-stage-test-0123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-label-stage-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 12, n_sequences=64, examples_per_feature=10)
    url = server.openai_url if provider == "openai" else server.anthropic_url
    result = cli("label", "--option", "features_per_request=1", "--llm", f"{provider}:counted", "--scorer", "detection", "--provider-option",
                 f"base_url={url}", "--provider-option", "timeout=5", "--concurrency", "8",
                 "--no-progress", "--store", store_path)
    with featurelens.open_store(store_path, read_only=True) as store:
        calls = dict(store.execute("SELECT status, count(*) FROM llm_calls GROUP BY 1"))
        errors = store.execute("SELECT DISTINCT error FROM llm_attempts WHERE error IS NOT NULL")
        scored = store.execute("SELECT count(*) FROM scores")[0][0]
    # the score stage used to fail its first requests with "Event loop is closed" after the
    # server had answered them: paid, lost, and the features failed (exit 3)
    assert errors == [], errors
    assert calls == {"ok": server.ok}, (calls, server.ok)
    assert result.exit_code == 0, result.output
    assert scored == 12


def _label(cli, store_path, url, *extra):
    return cli("label", "--option", "features_per_request=1", "--llm", "openai:counted", "--scorer", "detection", "--provider-option",
               f"base_url={url}", "--provider-option", "timeout=5", "--max-attempts", "1",
               "--concurrency", "4", "--no-progress", "--store", store_path, *extra)


@pytest.fixture
def filled(store_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-label-stage-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 6, n_sequences=32, examples_per_feature=10)
    return store_path


def test_label_where_every_explanation_failed_exits_4_with_the_summary(cli, filled):
    """A closed port: the explain stage fails whole. label used to go on to the score stage
    and stop there with exit 1 and "run featurelens explain first"."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _label(cli, filled, f"http://127.0.0.1:{port}/v1")
    assert result.exit_code == 4, result.output
    assert "failures explain: 6 current" in result.output
    assert "nothing succeeded: all 6 features failed (exit status 4)" in result.output
    assert "run featurelens explain first" not in result.output


def test_label_where_every_score_call_failed_is_partial_exit_3(cli, filled):
    def behave(n, path, headers, body):
        last = (body.get("messages") or [{}])[-1].get("content", "")
        if re.search(r"<example \d+>", last):
            return ("json", 500, {"error": {"message": "boom", "type": "api_error"}}, {})
        return answer(path, "Explanation: numbers")

    server = HostileServer(behave).start()
    try:
        result = _label(cli, filled, server.openai_url)
    finally:
        server.stop()
    assert result.exit_code == 3, result.output
    assert "failures score:detection: 6 current" in result.output
    with featurelens.open_store(filled, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == 6
        assert store.execute("SELECT count(*) FROM scores")[0][0] == 0
