"""A loopback OpenAI-compatible stub server with a fixed latency, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` (echo with
log-probabilities) after sleeping ``latency`` seconds, with a deterministic answer and
usage counted as four characters a token. Written on bare asyncio streams so that the
server costs little CPU next to the client it measures, and bound to 127.0.0.1 only.

``python -m featurelens.testing.stub_server --latency 0.1`` prints ``PORT <n>`` and
serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time

TOPICS = ["numbers", "closing brackets", "the word 'the'", "animals", "code keywords",
          "punctuation", "verbs of motion", "years"]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict]:
    """One HTTP/1.1 request from ``reader``: method, path and the JSON body ({} if none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return method, path, json.loads(await reader.readexactly(length)) if length else {}


def answer_for(content: str) -> str:
    """A deterministic explanation for a prompt (so tests can predict it)."""
    digest = hashlib.blake2s(content.encode("utf-8"), digest_size=2).digest()
    return f"Explanation: {TOPICS[int.from_bytes(digest, 'big') % len(TOPICS)]}"


def _answer_chat(messages: list) -> str:
    """One ``Explanation:`` line, or one ``N: ...`` line per ``Feature N:`` block of a grouped
    explanation request (API models get several features a request by default)."""
    content = "".join(str(m.get("content", "")) for m in messages)
    last = str(messages[-1].get("content", "")) if messages else ""
    blocks = re.split(r"^Feature (\d+):\n", last, flags=re.M)[1:]
    if not blocks:
        return answer_for(content)
    return "\n".join(f"{n}: {answer_for(body).removeprefix('Explanation: ')}"
                     for n, body in zip(blocks[::2], blocks[1::2]))


def _chat(body: dict, seq: int) -> dict:
    messages = body.get("messages") or []
    content = "".join(str(m.get("content", "")) for m in messages)
    text = _answer_chat(messages)
    prompt_tokens = max(1, len(content) // 4)
    return {"id": f"chatcmpl-{seq}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4,
                      "total_tokens": prompt_tokens + len(text) // 4,
                      "prompt_tokens_details": {"cached_tokens": 0}}}


def _completion(body: dict, seq: int) -> dict:
    prompt = str(body.get("prompt", ""))
    tokens = prompt.split(" ")
    tokens = [t if i == len(tokens) - 1 else t + " " for i, t in enumerate(tokens)]
    k = int(body.get("logprobs") or 1)
    top = [{str(d): -float(d + 1) for d in range(min(k, 11))} for _ in tokens]
    return {"id": f"cmpl-{seq}", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "text": prompt, "finish_reason": "length",
                         "logprobs": {"tokens": tokens, "token_logprobs": [None] + [-1.0] * (len(tokens) - 1),
                                      "top_logprobs": [None] + top[1:],
                                      "text_offset": list(range(len(tokens)))}}],
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": 0,
                      "total_tokens": len(tokens)}}


class StubServer:
    """``await StubServer(latency).start()`` then ``server.base_url``; counts requests."""

    def __init__(self, latency: float = 0.1, host: str = "127.0.0.1", port: int = 0,
                 report_every: int = 0):
        self.latency = latency
        self.report_every = report_every
        self.host = host
        self.port = port
        self.requests = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> "StubServer":
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                method, path, body = await read_request(reader)
                self.requests += 1
                if self.report_every and self.requests % self.report_every == 0:
                    print(f"SERVED {self.requests}", flush=True)
                await asyncio.sleep(self.latency)
                if method == "POST" and path.endswith("/chat/completions"):
                    status, payload = "200 OK", _chat(body, self.requests)
                elif method == "POST" and path.endswith("/completions"):
                    status, payload = "200 OK", _completion(body, self.requests)
                else:
                    status, payload = "404 Not Found", {"error": {"message": f"no route {path}"}}
                data = json.dumps(payload).encode("utf-8")
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode("latin-1") + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(latency: float, port: int, report_every: int) -> None:
    server = await StubServer(latency, port=port, report_every=report_every).start()
    print(f"PORT {server.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--report-every", type=int, default=0,
                        help="print SERVED <n> after every n-th request (tests wait on it)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.latency, args.port, args.report_every))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
