"""Helpers for the labeling tests: a real store with synthetic features, a tiny explainer.

The explainer here is deliberately minimal (the real ones live in
featurelens.labelers.explainers and have their own tests); it lets the engine be
tested without depending on prompt wording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

import featurelens
from featurelens.core.host.protocols import (
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ParseError,
)
from featurelens.core.store.database import Store

WORDS = [" the", " cat", " sat", " on", " 42", "(", ")", " dog", " ran", "."]


def fill(store: Store, n_features: int = 20, *, dictionary_id: str = "d1", seq_len: int = 8,
         n_sequences: int = 16, examples_per_feature: int = 3, seed: int = 0) -> None:
    """Write sequences, features and top examples (feature f fires at position f % seq_len)."""
    rng = np.random.default_rng(seed)
    sequences = pl.DataFrame({
        "corpus_id": ["c1"] * n_sequences, "sequence_id": list(range(n_sequences)),
        "model_id": ["m1"] * n_sequences,
        "tokens": [[int(t) for t in rng.integers(0, len(WORDS), seq_len)] for _ in range(n_sequences)],
    })
    sequences = sequences.with_columns(pl.col("tokens").map_elements(
        lambda ids: [WORDS[i] for i in ids], return_dtype=pl.List(pl.String)).alias("token_strs"))
    features = pl.DataFrame({
        "dictionary_id": [dictionary_id] * n_features, "feature": list(range(n_features)),
        "corpus_id": ["c1"] * n_features, "n_tokens": [1000] * n_features,
        "fire_count": [f * 10 + 1 for f in range(n_features)],  # every feature has examples: it fired
        "density": [(f * 10 + 1) / 1000 for f in range(n_features)],
        "max_activation": [float(f + 1) for f in range(n_features)],
    })
    rows = []
    for f in range(n_features):
        for rank in range(examples_per_feature):
            acts = [0.0] * seq_len
            acts[f % seq_len] = float(f + 1) / (rank + 1)
            rows.append({"dictionary_id": dictionary_id, "feature": f, "kind": "top", "rank": rank,
                         "corpus_id": "c1", "sequence_id": (f + rank) % n_sequences,
                         "activations": acts, "max_activation": max(acts),
                         "max_position": f % seq_len})
    with store.transaction():
        store.insert("sequences", sequences, on_conflict="ignore")
        store.insert("features", features)
        store.insert("examples", pl.DataFrame(rows))


class EchoExplainer:
    """Asks for a label naming the feature's strongest token; parses ``LABEL: ...``."""

    name = "echo"

    def __init__(self, shared: str = "You label features.", **options: Any):
        self.shared = shared

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        top = record.examples[0]
        token = top.tokens[top.activations.index(max(top.activations))]
        return [LLMRequest(messages=[{"role": "system", "content": self.shared},
                                     {"role": "user", "content": f"feature {record.feature}: {token!r}"}],
                           max_tokens=32, shared_prefix=1)]

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        text = responses[0].text
        if not text.startswith("LABEL:"):
            raise ParseError(f"expected 'LABEL: ...', got {text[:40]!r}")
        return text.removeprefix("LABEL:").strip()


class _TestPlugin:
    @staticmethod
    @featurelens.hookimpl
    def register_explainers(register):
        register("echo", EchoExplainer, description="test explainer")


def use_test_explainer(monkeypatch) -> None:
    """Make ``echo`` available to :func:`featurelens.core.host.manager.create`."""
    from featurelens.core.host import manager as plugins
    monkeypatch.setattr(plugins, "_HOST", plugins.build_host(extra_plugins=[("test-llm", _TestPlugin)]))


class ScriptedProvider:
    """An in-process provider for engine tests: answers, or raises, per feature."""

    name = "openai"
    model = "gpt-4o-mini"
    key_env = "OPENAI_API_KEY"
    capabilities = frozenset()

    def __init__(self, answer=None, delay: float = 0.0):
        self.answer = answer or (lambda request: f"LABEL: {request.messages[-1]['content']}")
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            result = self.answer(request)
            if isinstance(result, BaseException):
                raise result
            return LLMResponse(text=result, input_tokens=100, output_tokens=10, cached_input_tokens=20)
        finally:
            self.in_flight -= 1


# -- HTTP-level fakes for the real SDKs --------------------------------------------------
def chat_json(text: str, prompt_tokens: int = 50, completion_tokens: int = 5, cached: int = 0,
              logprobs: list | None = None) -> dict:
    """A chat.completion body as OpenAI sends it."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "logprobs": {"content": logprobs} if logprobs is not None else None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached}}}


def message_json(text: str, input_tokens: int = 10, cache_read: int = 0, cache_write: int = 0,
                 output_tokens: int = 5) -> dict:
    """A Messages API body as Anthropic sends it."""
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_read_input_tokens": cache_read,
                      "cache_creation_input_tokens": cache_write}}


class FakeAPI:
    """An ``httpx2.MockTransport`` handler: scripted answers, every request recorded.

    ``script`` items are ``(status, json_body, headers)`` tuples, exceptions to raise
    (transport errors such as ``httpx2.ReadTimeout``), or a callable taking the request.
    When the script runs out, ``default`` answers.
    """

    def __init__(self, script: list | None = None, default=None):
        self.script = list(script or [])
        self.default = default
        self.requests: list = []
        self.times: list[float] = []

    def handler(self, request):
        import time

        import httpx2

        self.requests.append(request)
        self.times.append(time.monotonic())
        item = self.script.pop(0) if self.script else self.default
        if callable(item) and not isinstance(item, BaseException):
            item = item(request)
        if isinstance(item, BaseException):
            raise item
        status, body, headers = item
        return httpx2.Response(status, json=body, headers=headers or {})

    def client(self):
        import httpx2

        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))

    def bodies(self) -> list[dict]:
        import json

        return [json.loads(r.content) for r in self.requests]


def serve_chat(answer: Callable[[dict], str]):
    """OpenAI chat completions on a real localhost server, answering each request body with
    ``answer(body)``: Ray workers are other processes, so the SDK is faked on the wire.
    A generator for fixtures: yields ``(base_url, bodies seen)``, then shuts the server down."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            payload = json.dumps(chat_json(answer(body))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()
