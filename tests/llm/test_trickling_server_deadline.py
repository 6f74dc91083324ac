"""A server that trickles its answer one byte at a time: each byte
comes well within the SDK's per-read timeout, so only a deadline on the whole request
stops it. With ``--provider-option timeout=1.5`` a call now ends after about 1.5 s as a
timeout (retried, then failed) instead of the 80 s the body takes."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from hostile_server import chat, message
from llm_fixtures import fill

import featurelens


class Trickle:
    """Answers every request with its headers at once and then a byte every 0.2 s."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests += 1
            path = head.split(b" ")[1].decode()
            body = json.dumps(message("Explanation: numbers") if path.endswith("/messages")
                              else chat("Explanation: numbers")).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n" % len(body))
            for i in range(len(body)):
                conn.sendall(body[i:i + 1])
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_trickled_body_times_out_after_the_timeout_option(cli, store_path, monkeypatch, provider):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-trickle-test-0123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-trickle-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 1, n_sequences=16)
    server = Trickle()
    url = f"http://127.0.0.1:{server.port}" + ("/v1" if provider == "openai" else "")
    started = time.monotonic()
    try:
        result = cli("explain", "--option", "features_per_request=1", "--llm", f"{provider}:trickle", "--provider-option", f"base_url={url}",
                     "--provider-option", "timeout=1.5", "--max-attempts", "2", "--no-progress",
                     "--store", store_path)
    finally:
        server.close()
    elapsed = time.monotonic() - started
    assert result.exit_code == 4, result.output
    assert elapsed < 15, elapsed  # two attempts of about 1.5 s (the body alone takes 80 s)
    with featurelens.open_store(store_path, read_only=True) as store:
        attempts = store.execute("SELECT outcome, error FROM llm_attempts ORDER BY attempt")
    assert [a[0] for a in attempts] == ["retried", "failed"]
    assert all("within 1.5 s" in a[1] for a in attempts), attempts
    assert server.requests == 2
