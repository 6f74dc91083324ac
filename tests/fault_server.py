"""A loopback OpenAI- and Anthropic-compatible server that injects faults, for tests.

It answers ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic)
with an ``Explanation: ...`` line, and injects, at the rates given: 429 with a short
``retry-after-ms``, 500, dropped connections, requests it never answers (the client
times out) and garbage answers (HTTP 200 with text that is not an answer). Which fault a
request gets is drawn from the prompt's digest and how often that prompt was seen, so a
run is reproducible whatever the order of arrival.

It keeps the books a researcher would keep against a provider's dashboard: requests
seen, HTTP 200 answers sent, prompts that were answered well and asked *again* (paid
twice). :meth:`FaultServer.kill_after` makes it stop answering after the n-th answer,
waits until the client has read everything sent to it (however loaded the machine),
then ``kill -9``s it after a random grace: any prompt it then asks again was paid twice.

Runs on its own thread and event loop, bound to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from provider_urls import ProviderURLs

from featurelens.testing.stub_server import read_request

TOPICS = ["numbers", "closing brackets", "the word the", "animals", "code keywords",
          "punctuation", "verbs of motion", "years"]
GARBAGE = ["\x00 lorem {{{ [[ not an answer", "#@!$%^&* ~~~ ::::", "\ufffd\ufffd\x07 ]]] {{{"]


@dataclass
class Faults:
    """Per-request probabilities of each fault (the rest are good answers)."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    hang: float = 0.0
    garbage: float = 0.0
    seed: int = 0

    def draw(self, digest: str, nth: int) -> str:
        rng = random.Random(f"{self.seed}:{digest}:{nth}")
        x = rng.random()
        for name in ("rate_limit", "server_error", "drop", "hang", "garbage"):
            x -= getattr(self, name)
            if x < 0:
                return name
        return "ok"


def good_answer(digest: str, messages: list | None = None) -> str:
    """One ``Explanation:`` line, or ``N: ...`` per ``Feature N:`` block of a grouped request."""
    last = str(messages[-1].get("content", "")) if messages else ""
    numbers = re.findall(r"^Feature (\d+):$", last, flags=re.M)
    if numbers:
        return "\n".join(f"{n}: {TOPICS[(int(digest[:4], 16) + int(n)) % len(TOPICS)]}" for n in numbers)
    return f"Explanation: {TOPICS[int(digest[:4], 16) % len(TOPICS)]}"


class FaultServer(ProviderURLs):
    """``FaultServer(Faults(...)).start()``; ``openai_url`` / ``anthropic_url``; counters."""

    def __init__(self, faults: Faults | None = None, latency: float = 0.005):
        self.faults = faults or Faults()
        self.latency = latency
        self.seen = 0  #: requests read in full (what a provider bills or rate-limits)
        self.ok = 0  #: HTTP 200 answers written (good or garbage)
        self.garbage_sent = 0
        self.outcomes: Counter[str] = Counter()
        self.times_seen: Counter[str] = Counter()
        self.answered: set[str] = set()  #: prompts that got a good answer
        self.paid_twice: list[str] = []  #: prompts asked again after a good answer
        self.port = 0
        self._frozen = False
        self._kill: tuple[int, int, float] | None = None  #: (after n ok, pid, grace seconds)
        self.killed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    # -- life ------------------------------------------------------------------------
    def start(self) -> "FaultServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await server.serve_forever()

        try:
            self._loop.run_until_complete(serve())
        except (RuntimeError, asyncio.CancelledError):
            pass

    def stop(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(5)

    def kill_after(self, n_ok: int, pid: int, grace: float) -> None:
        """After ``n_ok`` more 200 answers, answer nothing more and SIGKILL ``pid`` after
        ``grace`` seconds (``killed`` is set then)."""
        with self._lock:
            self.killed.clear()
            self._kill = (self.ok + n_ok, pid, grace)

    def thaw(self) -> None:
        """Answer again (after a kill)."""
        with self._lock:
            self._frozen = False
            self._kill = None

    # -- one connection --------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _, path, body = await read_request(reader)
                if not await self._answer(path, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _hold(self, reader: asyncio.StreamReader) -> bool:
        """Never answer: wait for the client to give up (timeout) or die."""
        while await reader.read(65536):
            pass
        return False

    async def _answer(self, path: str, body: dict, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        anthropic = path.endswith("/messages")
        messages = body.get("messages") or []
        content = json.dumps([body.get("system"), messages], sort_keys=True)
        digest = hashlib.sha256(content.encode()).hexdigest()
        with self._lock:
            self.seen += 1
            nth = self.times_seen[digest]
            self.times_seen[digest] += 1
            if digest in self.answered:
                self.paid_twice.append(digest)
            frozen = self._frozen
        if frozen:
            return await self._hold(reader)
        fault = self.faults.draw(digest, nth)
        await asyncio.sleep(self.latency)
        with self._lock:
            frozen = self._frozen
            if not frozen:
                self.outcomes[fault] += 1
        if frozen:
            return await self._hold(reader)
        if fault == "drop":
            return False
        if fault == "hang":
            return await self._hold(reader)
        if fault in ("rate_limit", "server_error"):
            status = "429 Too Many Requests" if fault == "rate_limit" else "500 Internal Server Error"
            kind = "rate_limit_error" if fault == "rate_limit" else "api_error"
            payload = ({"type": "error", "error": {"type": kind, "message": fault}} if anthropic
                       else {"error": {"message": fault, "type": kind, "code": None}})
            extra = "retry-after-ms: 20\r\n" if fault == "rate_limit" else ""
            self._write(writer, status, payload, extra)
            await writer.drain()
            return True
        text = GARBAGE[nth % len(GARBAGE)] if fault == "garbage" else good_answer(digest, messages)
        n_in = max(1, len(content) // 4)
        if anthropic:
            payload = {"id": f"msg_{digest[:12]}", "type": "message", "role": "assistant",
                       "model": body.get("model", "fault"), "stop_reason": "end_turn",
                       "content": [{"type": "text", "text": text}],
                       "usage": {"input_tokens": n_in, "output_tokens": len(text) // 4 + 1}}
        else:
            payload = {"id": f"chatcmpl-{digest[:12]}", "object": "chat.completion",
                       "created": int(time.time()), "model": body.get("model", "fault"),
                       "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": n_in, "completion_tokens": len(text) // 4 + 1,
                                 "total_tokens": n_in + len(text) // 4 + 1}}
        with self._lock:  # never await while holding it: the lock is shared with the test thread
            frozen = self._frozen
            if not frozen:
                self._count_answer(fault, digest, writer, payload)
        if frozen:
            return await self._hold(reader)
        await writer.drain()
        return True

    def _count_answer(self, fault: str, digest: str, writer: asyncio.StreamWriter, payload: dict) -> None:
        """Count one 200 answer and write it (under the lock, so a freeze cannot split the two)."""
        self.ok += 1
        if fault == "garbage":
            self.garbage_sent += 1
        else:
            self.answered.add(digest)
        if self._kill is not None and self.ok >= self._kill[0]:
            self._frozen = True
            _, pid, grace = self._kill
            self._kill = None
            threading.Thread(target=self._kill_when_idle, args=(pid, grace), daemon=True).start()
        self._write(writer, "200 OK", payload)

    def _kill_when_idle(self, pid: int, grace: float) -> None:
        """Wait until the client has read everything it was sent (asleep, with no context
        switch for 100 ms: blocked on sockets that have nothing more to give), then let
        ``grace`` pass (its flush timer may fire meanwhile) and kill it."""
        def probe() -> tuple[str, str] | None:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                return None
            switches = [line for line in status.splitlines() if "ctxt_switches" in line]
            return stat.rsplit(")", 1)[1].split()[0], " ".join(switches)

        last, stable, deadline = probe(), 0, time.monotonic() + 30
        while last is not None and stable < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
            now = probe()
            stable = stable + 1 if now == last and now is not None and now[0] == "S" else 0
            last = now
        time.sleep(grace)
        self._sigkill(pid)

    def _sigkill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.killed.set()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: str, payload: dict, extra: str = "") -> None:
        data = json.dumps(payload).encode("utf-8")
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
                     f"Content-Length: {len(data)}\r\n\r\n".encode("latin-1") + data)
