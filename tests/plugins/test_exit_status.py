"""How explain ends under faults (issue 10, items 3-6): exit statuses scripts can tell
apart, a per-stage failure summary, unreadable answers out of the cache and asked again,
and one failure row per feature that is resolved once the feature succeeds."""

from __future__ import annotations

import socket

import pytest
from fault_server import Faults, FaultServer
from llm_fixtures import fill

import featurelens


@pytest.fixture
def filled(store_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-exit-test")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 12, n_sequences=64)
    return store_path


@pytest.fixture
def server():
    running = FaultServer().start()
    yield running
    running.stop()


def explain(cli, store_path, url, *extra):
    # one request a feature: these tests count calls and attempts per feature
    return cli("explain", "--llm", "openai:fault", "--option", "features_per_request=1",
               "--provider-option", f"base_url={url}",
               "--provider-option", "timeout=5", "--concurrency", "4", "--no-progress",
               "--store", store_path, *extra)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_is_exit_4_with_the_summary(cli, filled):
    result = explain(cli, filled, f"http://127.0.0.1:{closed_port()}/v1", "--max-attempts", "1")
    assert result.exit_code == 4, result.output
    assert "failures explain: 12 current (12 from this run" in result.output
    assert "nothing succeeded: all 12 features failed (exit status 4)" in result.output
    assert "Traceback" not in result.output


def test_every_call_http_500_is_exit_4_and_every_attempt_is_recorded(cli, filled, server):
    server.faults = Faults(server_error=1.0)
    result = explain(cli, filled, server.openai_url, "--max-attempts", "2")
    assert result.exit_code == 4, result.output
    with featurelens.open_store(filled, read_only=True) as store:
        attempts = store.execute("SELECT outcome, http_status, count(*) FROM llm_attempts "
                                 "GROUP BY ALL ORDER BY 1")
        calls = store.execute("SELECT status, sum(attempts) FROM llm_calls GROUP BY 1")
    assert server.seen == 24
    assert attempts == [("failed", 500, 12), ("retried", 500, 12)]
    assert calls == [("error", 24)]


def test_garbage_fails_is_not_cached_and_the_rerun_asks_again_and_resolves(cli, filled, server):
    server.faults = Faults(garbage=1.0)
    first = explain(cli, filled, server.openai_url)
    assert first.exit_code == 4, first.output
    with featurelens.open_store(filled, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0
        assert store.execute("SELECT count(*) FROM llm_cache")[0][0] == 0
        reason, answer = store.execute("SELECT reason, answer FROM failures LIMIT 1")[0]
    assert "unusable answer" in reason and "the answer began" in reason
    assert answer.startswith(("\x00 lorem", "#@!$", "\ufffd"))
    # half the prompts now get good answers: partial, exit 3, and they were asked again
    server.faults = Faults(garbage=0.5, seed=3)
    seen = server.seen
    second = explain(cli, filled, server.openai_url)
    assert server.seen - seen == 12  # nothing served from the cache as if good
    assert second.exit_code == 3, second.output
    assert "partly done" in second.output and "(exit status 3)" in second.output
    server.faults = Faults()
    third = explain(cli, filled, server.openai_url)
    assert third.exit_code == 0, third.output
    assert "resolved by this run" in third.output
    with featurelens.open_store(filled, read_only=True) as store:
        rows = store.execute("SELECT count(*), count(DISTINCT feature), "
                             "count(*) FILTER (WHERE resolved_at IS NULL), max(attempts) FROM failures")[0]
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == 12
    assert rows[0] == rows[1] == 12  # one row per feature, however often it failed
    assert rows[2] == 0 and rows[3] >= 2
    fourth = explain(cli, filled, server.openai_url)
    assert fourth.exit_code == 0 and "already done" in fourth.output
