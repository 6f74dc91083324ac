"""Bodies a real proxy or a broken server sends where JSON is expected (audit of issue 10,
items 2 and 6), through both SDKs: an HTML page or an event stream with HTTP 200, JSON cut
short, a connection closed without a word, a 502 page, a refused key. Each is a failed
call (never an "ok" call with an empty answer), every request the server saw is on record
in llm_attempts and in llm_calls.attempts, and a run where all failed exits 4 (1 for a
refused key), with no traceback."""

from __future__ import annotations

import json

import pytest
from hostile_server import HostileServer, chat, message
from llm_fixtures import fill
from quick_retries import quick_retries  # noqa: F401 - fixture

import featurelens

pytestmark = pytest.mark.usefixtures("quick_retries")
N = 3


def _good(path: str) -> dict:
    return message("Explanation: numbers") if path.endswith("/messages") else chat("Explanation: numbers")


BODIES = {
    "html-200": lambda path: ("raw", 200, "text/html", b"<html><body>Service unavailable</body></html>", {}),
    "sse-200": lambda path: ("raw", 200, "text/event-stream",
                             b"data: " + json.dumps(_good(path)).encode() + b"\n\ndata: [DONE]\n\n", {}),
    "json-cut-200": lambda path: ("raw", 200, "application/json", json.dumps(_good(path)).encode()[:40], {}),
    "body-cut-200": lambda path: ("truncate", 200, json.dumps(_good(path)).encode()[:40]),
    "closed": lambda path: ("close",),
    "html-502": lambda path: ("raw", 502, "text/html", b"<html><body>Bad gateway</body></html>", {}),
    "refused-401": lambda path: ("json", 401, {"error": {"message": "invalid key", "type": "auth"}}, {}),
}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("body", sorted(BODIES))
def test_a_broken_body_is_a_failed_call_on_record(cli, store_path, monkeypatch, provider, body):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wire-faults-test-0123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wire-faults-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, N, n_sequences=16)
    server = HostileServer(lambda n, path, headers, request: BODIES[body](path)).start()
    try:
        url = server.openai_url if provider == "openai" else server.anthropic_url
        result = cli("explain", "--option", "features_per_request=1", "--llm", f"{provider}:hostile", "--provider-option", f"base_url={url}",
                     "--provider-option", "timeout=5", "--max-attempts", "2", "--concurrency", "1",
                     "--no-progress", "--store", store_path)
    finally:
        server.stop()
    assert "Traceback" not in result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        statuses = dict(store.execute("SELECT status, count(*) FROM llm_calls GROUP BY 1"))
        in_calls = store.execute("SELECT coalesce(sum(attempts), 0) FROM llm_calls")[0][0]
        attempts = store.execute("SELECT count(*) FROM llm_attempts")[0][0]
        explained = store.execute("SELECT count(*) FROM explanations")[0][0]
        reasons = [r[0] for r in store.execute("SELECT reason FROM failures")]
    assert explained == 0 and "ok" not in statuses, statuses
    assert attempts == server.seen and in_calls == server.seen, (attempts, in_calls, server.seen)
    if body == "refused-401":
        assert result.exit_code == 1, result.output
        assert statuses == {"error": server.seen} and server.seen <= N  # a refused key: no retry
        return
    assert result.exit_code == 4, result.output
    assert statuses == {"error": N}
    assert len(reasons) == N and not any("the answer was empty" in r for r in reasons), reasons
