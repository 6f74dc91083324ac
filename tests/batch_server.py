"""A loopback OpenAI Files+Batches and Anthropic Message Batches server that can kill its
client mid-submission: the real SDKs talk to it over HTTP (a CLI subprocess included).

``kill_at``: ``"create"`` records the batch, then SIGKILLs ``pid`` before answering (the
provider made the batch; the client never heard); ``"create-lost"`` SIGKILLs without
recording (the create never arrived); ``"upload"`` SIGKILLs at OpenAI's file upload;
``"results"`` SIGKILLs when a batch's results are asked for (a collection cut off).
``kill_after`` lets that many of those calls through first (a multi-file submission
killed at its second file, a collection killed after its first batch).
``down`` answers 503 to every list call (a provider that cannot be asked). Batches are
finished as soon as they exist; every answer is :meth:`BatchServer.answer` of the request
(a plain explanation here; subclasses answer scoring prompts too).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from provider_urls import ProviderURLs

from featurelens.testing.servers import start_in_thread

ANSWER = "Explanation: mentions of small animals"


class BatchServer(ProviderURLs):
    def __init__(self) -> None:
        self.files: dict[str, list[dict]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.creates = 0  #: create calls the server acted on (billed batches)
        self.kill_at: str | None = None
        self.kill_after = 0
        self.pid: int | None = None
        self.down = False
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._route(self, "GET")

            def do_POST(self) -> None:
                server._route(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        start_in_thread(self.httpd)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def env(self) -> dict[str, str]:
        return {"OPENAI_API_KEY": "sk-test-intent", "ANTHROPIC_API_KEY": "sk-ant-test-intent",
                "OPENAI_BASE_URL": self.openai_url, "ANTHROPIC_BASE_URL": self.anthropic_url}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_anthropic(self, requests: int, created: float | None = None) -> str:
        """A batch someone else created (the same size as ours: an ambiguous candidate)."""
        with self.lock:
            batch_id = f"msgbatch_{len(self.batches)}"
            self.batches[batch_id] = {"kind": "anthropic", "created": created or time.time(),
                                      "requests": [{"custom_id": f"other-{i}", "params": {}}
                                                   for i in range(requests)]}
        return batch_id

    def parse_upload(self, text: str) -> list[dict[str, Any]]:
        """The request lines of an uploaded OpenAI batch file."""
        return [json.loads(l) for l in text.splitlines() if l.startswith('{"custom_id"')]

    def answer(self, request: dict[str, Any]) -> str:
        """The text answered to one request (an OpenAI chat body or Anthropic params)."""
        return ANSWER

    # -- routing ---------------------------------------------------------------------
    def _route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = url.path
        body = h.rfile.read(int(h.headers.get("content-length") or 0))
        if method == "POST" and path == "/v1/files":
            if self._kill_here("upload"):
                return self._hang(h)
            with self.lock:
                file_id = f"file-in-{len(self.files)}"
                text = body.decode("utf-8", "replace")
                self.files[file_id] = self.parse_upload(text)
            return self._json(h, {"id": file_id, "object": "file", "bytes": len(body), "created_at": int(time.time()),
                                  "filename": "x.jsonl", "purpose": "batch", "status": "processed"})
        if method == "POST" and path in ("/v1/batches", "/v1/messages/batches"):
            return self._create(h, path, json.loads(body))
        if method == "GET" and path in ("/v1/batches", "/v1/messages/batches"):
            if self.down:
                return self._json(h, {"type": "error", "error": {"type": "overloaded_error",
                                                                  "message": "service unavailable"}}, 503)
            kind = "openai" if path == "/v1/batches" else "anthropic"
            return self._list(h, kind, parse_qs(url.query))
        if method == "GET" and path.startswith("/v1/batches/"):
            return self._json(h, self._openai(path.rsplit("/", 1)[1]))
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            if self._kill_here("results"):
                return self._hang(h)
            return self._openai_results(h, path.split("/")[3].removeprefix("file-out-"))
        if method == "GET" and path.startswith("/v1/messages/batches/") and path.endswith("/results"):
            if self._kill_here("results"):
                return self._hang(h)
            return self._anthropic_results(h, path.split("/")[-2])
        if method == "GET" and path.startswith("/v1/messages/batches/"):
            batch_id = path.rsplit("/", 1)[1]
            if batch_id not in self.batches:
                return self._json(h, {"type": "error", "error": {"type": "not_found_error",
                                                                  "message": "no such batch"}}, 404)
            return self._json(h, self._anthropic(batch_id))
        self._json(h, {"error": {"message": f"no route {method} {path}"}}, 404)

    def _kill_here(self, point: str) -> bool:
        with self.lock:
            if self.kill_at != point:
                return False
            if self.kill_after > 0:
                self.kill_after -= 1
                return False
            self.kill_at = None
        deadline = time.monotonic() + 30
        while self.pid is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        return True

    @staticmethod
    def _hang(h: BaseHTTPRequestHandler) -> None:
        """The client is dead: answer nothing, drop the connection."""
        h.close_connection = True

    def _create(self, h: BaseHTTPRequestHandler, path: str, sent: dict) -> None:
        if self._kill_here("create-lost"):
            return self._hang(h)
        with self.lock:
            self.creates += 1
            if path == "/v1/batches":
                batch_id = f"batch_{len(self.batches)}"
                self.batches[batch_id] = {"kind": "openai", "created": time.time(),
                                          "input": sent["input_file_id"], "metadata": sent.get("metadata")}
            else:
                batch_id = f"msgbatch_{len(self.batches)}"
                self.batches[batch_id] = {"kind": "anthropic", "created": time.time(),
                                          "requests": sent["requests"]}
        if self._kill_here("create"):
            return self._hang(h)
        self._json(h, self._openai(batch_id) if path == "/v1/batches" else self._anthropic(batch_id))

    def _list(self, h: BaseHTTPRequestHandler, kind: str, query: dict[str, list[str]]) -> None:
        ids = sorted((b for b, v in self.batches.items() if v["kind"] == kind),
                     key=lambda b: -self.batches[b]["created"])
        after = (query.get("after") or query.get("after_id") or [None])[0]
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        page, rest = ids[:2], ids[2:]  # small pages, so the clients must page
        data = [self._openai(b) if kind == "openai" else self._anthropic(b) for b in page]
        out: dict[str, Any] = {"data": data, "has_more": bool(rest),
                               "first_id": page[0] if page else None, "last_id": page[-1] if page else None}
        if kind == "openai":
            out["object"] = "list"
        self._json(h, out)

    # -- objects -----------------------------------------------------------------------
    def _openai(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        n = len(self.files[batch["input"]])
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
                "input_file_id": batch["input"], "completion_window": "24h", "status": "completed",
                "created_at": int(batch["created"]), "output_file_id": f"file-out-{batch_id}",
                "error_file_id": None, "metadata": batch.get("metadata"),
                "request_counts": {"total": n, "completed": n, "failed": 0}}

    def _anthropic(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        n = len(batch["requests"])
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch["created"]))
        return {"id": batch_id, "type": "message_batch", "processing_status": "ended",
                "request_counts": {"processing": 0, "succeeded": n, "errored": 0, "canceled": 0, "expired": 0},
                "created_at": created, "expires_at": created, "ended_at": created, "archived_at": None,
                "cancel_initiated_at": None,
                "results_url": f"http://127.0.0.1:{self.port}/v1/messages/batches/{batch_id}/results"}

    def _openai_results(self, h: BaseHTTPRequestHandler, batch_id: str) -> None:
        lines = [{"id": "r", "custom_id": line["custom_id"], "error": None, "response": {
            "status_code": 200, "request_id": "r", "body": {
                "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": self.answer(line["body"])}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}}}
            for line in self.files[self.batches[batch_id]["input"]]]
        self._raw(h, "\n".join(json.dumps(l) for l in lines).encode(), "application/octet-stream")

    def _anthropic_results(self, h: BaseHTTPRequestHandler, batch_id: str) -> None:
        lines = [{"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": {
            "id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": self.answer(item["params"])}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 50, "output_tokens": 5}}}}
            for item in self.batches[batch_id]["requests"]]
        self._raw(h, "\n".join(json.dumps(l) for l in lines).encode(), "application/binary")

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, payload: dict, status: int = 200) -> None:
        BatchServer._raw(h, json.dumps(payload).encode(), "application/json", status)

    @staticmethod
    def _raw(h: BaseHTTPRequestHandler, data: bytes, kind: str, status: int = 200) -> None:
        h.send_response(status)
        h.send_header("content-type", kind)
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
