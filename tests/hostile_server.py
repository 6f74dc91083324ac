"""A loopback OpenAI/Anthropic-compatible server whose answers a test scripts per request,
for the hostile-server probes: odd ``retry-after`` values, HTML or SSE where JSON is
expected, truncated bodies, closed connections, and bodies or headers that echo the key.

``HostileServer(behave).start()``; ``behave(n, path, headers, body)`` returns one of

- ``("json", status, payload, extra_headers)``: a JSON body,
- ``("raw", status, content_type, bytes, extra_headers)``: any body as given,
- ``("truncate", status, bytes)``: a ``Content-Length`` larger than the bytes, then close,
- ``("close",)``: close the connection without a word.

Every request is counted (``seen``) and the 200 answers too (``ok``). Runs on a thread,
bound to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provider_urls import ProviderURLs

from featurelens.testing.servers import start_in_thread

Behaviour = Callable[[int, str, dict[str, str], dict], tuple]


def chat(text: str, prompt_tokens: int = 40, completion_tokens: int = 4) -> dict[str, Any]:
    """An OpenAI chat.completion body answering ``text``."""
    return {"id": "chatcmpl-h", "object": "chat.completion", "created": 1, "model": "hostile",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def message(text: str, input_tokens: int = 40, output_tokens: int = 4) -> dict[str, Any]:
    """An Anthropic Messages body answering ``text``."""
    return {"id": "msg_h", "type": "message", "role": "assistant", "model": "hostile",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def answer(path: str, text: str) -> tuple:
    """A 200 answer in the dialect the path asks for."""
    return ("json", 200, message(text) if path.endswith("/messages") else chat(text), {})


def error(path: str, status: int, text: str, extra: dict[str, str] | None = None) -> tuple:
    """An error body in the dialect the path asks for."""
    if path.endswith("/messages"):
        payload = {"type": "error", "error": {"type": "api_error", "message": text}}
    else:
        payload = {"error": {"message": text, "type": "api_error", "code": None}}
    return ("json", status, payload, extra or {})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (timeout, kill) is part of the test, not news


class HostileServer(ProviderURLs):
    """See the module docstring."""

    def __init__(self, behave: Behaviour):
        self.behave = behave
        self.seen = 0
        self.ok = 0
        self.paths: list[str] = []
        self.keys: list[str] = []  #: the key each request carried (bearer or x-api-key)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    outer.seen += 1
                    n = outer.seen
                    outer.paths.append(self.path)
                    outer.keys.append(headers.get("x-api-key")
                                      or headers.get("authorization", "").removeprefix("Bearer "))
                reply = outer.behave(n, self.path, headers, body)
                kind = reply[0]
                if kind == "close":
                    self.close_connection = True
                    return
                if kind == "json":
                    _, status, payload, extra = reply
                    self._send(status, "application/json", json.dumps(payload).encode(), extra)
                elif kind == "raw":
                    _, status, ctype, data, extra = reply
                    self._send(status, ctype, data, extra)
                elif kind == "truncate":
                    _, status, data = reply
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data) + 100))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if reply[1] == 200:
                    with outer._lock:
                        outer.ok += 1

            do_GET = do_POST

            def _send(self, status: int, ctype: str, data: bytes, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    def start(self) -> "HostileServer":
        start_in_thread(self._server)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

