"""``--batch-api`` and ``batches status|collect`` against a server that refuses the key and
echoes it back in its error: one sentence, no traceback, and the key nowhere in the
output or the DuckDB file's bytes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from llm_fixtures import fill, use_test_explainer

import featurelens

KEY = "sk-proj-EchoedBackKey0123456789abcdef"


def _echo_server(status: int) -> ThreadingHTTPServer:
    class Echo(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            sent = (self.headers.get("authorization") or "").removeprefix("Bearer ")
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {sent}.",
                                         "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture(params=[401, 400, 500])
def echo(request, monkeypatch):
    server = _echo_server(request.param)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    use_test_explainer(monkeypatch)
    yield request.param
    server.shutdown()


def _assert_no_key(result, store_path) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.startswith("Error: "), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert KEY not in result.output and "EchoedBackKey" not in result.output
    for path in store_path.parent.glob(store_path.name + "*"):
        assert b"EchoedBackKey" not in path.read_bytes(), path


@pytest.mark.parametrize("command", ["explain", "label"])
def test_batch_submission_refused_with_the_key_echoed(cli, store_path, echo, command):
    with featurelens.open_store(store_path) as store:
        fill(store, 3)
    args = [command, "--llm", "openai:gpt-4o-mini", "--batch-api", "--store", store_path, "--max-attempts", 1]
    if command == "explain":
        args += ["--explainer", "echo"]
    result = cli(*args)
    _assert_no_key(result, store_path)
    assert ("rejected the API key" in result.output and "OPENAI_API_KEY" in result.output) if echo == 401 \
        else f"HTTP {echo}" in result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM batches")[0][0] == 0


@pytest.mark.parametrize("command", ["status", "collect"])
def test_batch_status_and_collect_refused_with_the_key_echoed(cli, store_path, echo, command):
    with featurelens.open_store(store_path) as store:
        store.insert("batches", pl.DataFrame([{
            "batch_id": "batch_abc", "provider": "openai", "model": "gpt-4o-mini", "purpose": "explain",
            "status": "submitted", "request_count": 1, "requests": json.dumps({"k": ["d1", 0, "explain"]}),
            "run_id": "explain-x"}]))
    before = store_path.read_bytes()
    result = cli("batches", command, "--store", store_path)
    _assert_no_key(result, store_path)
    assert "asking for batch status" in result.output
    assert store_path.read_bytes() == before
