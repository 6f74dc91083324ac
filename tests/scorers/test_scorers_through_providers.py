"""Scoring through the real openai and anthropic SDKs, faked only at the HTTP layer.

Each fake server answers as a faithful simulator would (the rule simulator's answer,
serialised in the provider's wire format), so these tests check the whole path: the
scorer's mode choice from the provider's capabilities, the SDK request (log-probs,
JSON, cache_control), the provider's parsing, and the scorer's reading.
"""

from __future__ import annotations

import json

import httpx2
import pytest

from featurelens.core.host.protocols import LLMRequest
from featurelens.llm.providers import build_provider
from featurelens.scorers.score_jobs import ScoreSpec, score_features
from featurelens.testing.planted_features import (
    PLANTED,
    RuleSimulator,
    planted_records,
    write_planted_store,
)


def _logprob_items(items):
    return [{"token": t.token, "logprob": t.logprob or 0.0, "bytes": None,
             "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in t.top.items()]}
            for t in items]


class FaithfulServer:
    """OpenAI chat + completions and Anthropic messages, answered by the rule simulator."""

    def __init__(self):
        self.simulator = RuleSimulator(capabilities=frozenset({"prompt_logprobs", "output_logprobs"}))
        self.bodies: list[dict] = []

    def handle(self, request):
        body = json.loads(request.content)
        self.bodies.append(body)
        path = request.url.path
        if path.endswith("/chat/completions"):
            answer = self.simulator.answer(LLMRequest(messages=body["messages"], top_logprobs=body.get(
                "top_logprobs", 0), json_output="response_format" in body, purpose="score"))
            return httpx2.Response(200, json={
                "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer.text},
                             "logprobs": {"content": _logprob_items(answer.output_logprobs)}
                             if body.get("logprobs") else None}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})
        if path.endswith("/completions"):
            answer = self.simulator.answer(LLMRequest(prompt=body["prompt"], prompt_logprobs=body["logprobs"]))
            tokens = [t.token for t in answer.prompt_logprobs] + [" 0"]
            return httpx2.Response(200, json={
                "id": "c", "object": "text_completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "length", "text": "".join(tokens),
                             "logprobs": {"tokens": tokens,
                                          "token_logprobs": [t.logprob for t in answer.prompt_logprobs] + [-0.1],
                                          "top_logprobs": [t.top or None for t in answer.prompt_logprobs] + [None],
                                          "text_offset": [0] * len(tokens)}}],
                "usage": {"prompt_tokens": len(tokens) - 1, "completion_tokens": 1,
                          "total_tokens": len(tokens)}})
        if path.endswith("/messages"):
            messages = [{"role": "system", "content": block["text"]} for block in body.get("system", [])]
            messages += [{"role": m["role"], "content": m["content"][0]["text"]} for m in body["messages"]]
            answer = self.simulator.answer(LLMRequest(messages=messages, json_output=True, purpose="score"))
            return httpx2.Response(200, json={
                "id": "m", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": answer.text}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": 10,
                                                 "cache_read_input_tokens": 0,
                                                 "cache_creation_input_tokens": 0}})
        return httpx2.Response(404, json={"error": {"message": path}})


@pytest.fixture
def planted(store):
    write_planted_store(store, planted_records(n_top=12, n_quantile=10, n_random=10))
    import polars as pl

    store.insert("explanations", pl.DataFrame([
        {"explanation_id": f"e{f}{i}", "dictionary_id": "planted", "feature": f, "explainer": "manual",
         "llm": "human:test", "text": text}
        for f in range(3) for i, (_, (_, text)) in enumerate(PLANTED.items())]))
    return store


@pytest.mark.parametrize("llm, options, mode", [
    ("openai:gpt-4o-mini", {}, "output-logprobs"),
    ("openai:served-model", {"base_url": "http://vllm.local/v1"}, "prompt-logprobs"),
    ("anthropic:claude-haiku-4-5", {}, "json"),
])
def test_simulation_through_real_sdks(planted, monkeypatch, llm, options, mode):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    server = FaithfulServer()
    provider = build_provider(llm, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(server.handle)),
                              **options)
    stats = score_features(planted, ScoreSpec(llm, "simulation"), provider=provider,
                           settings=_quiet())
    assert (stats.succeeded, stats.failed) == (9, 0)
    rows = planted.sql("SELECT s.feature, e.text, s.score, s.metrics FROM scores s "
                       "JOIN explanations e USING (explanation_id)").to_dicts()
    names = list(PLANTED)
    for row in rows:
        assert json.loads(row["metrics"])["mode"] == mode
        if PLANTED[names[row["feature"]]][1] == row["text"]:
            assert row["score"] > 0.8
        else:
            assert row["score"] < 0.3
    if mode == "output-logprobs":
        assert all(b["logprobs"] is True and b["top_logprobs"] == 20 for b in server.bodies)
    if mode == "prompt-logprobs":
        assert all(b["echo"] is True for b in server.bodies)
    if mode == "json":
        assert all(b["system"][0]["text"].startswith("We study") for b in server.bodies)
        assert all(b["messages"][1]["content"][0].get("cache_control") for b in server.bodies)
    # the API key never reaches the store
    dump = planted.sql("SELECT * FROM llm_calls").write_csv() + planted.sql("SELECT * FROM runs").write_csv()
    assert "sk-test" not in dump and "sk-ant-test" not in dump


def _quiet():
    from featurelens.llm.engine import EngineSettings

    return EngineSettings(progress=False, concurrency=4)


class FaithfulBatches(FaithfulServer):
    """Anthropic Message Batches on top of the faithful answers: ends after one poll."""

    def __init__(self):
        super().__init__()
        self.batches: dict[str, list[dict]] = {}
        self.polls: dict[str, int] = {}

    def _status(self, batch_id: str) -> dict:
        done = self.polls[batch_id] > 1
        n = len(self.batches[batch_id])
        return {"id": batch_id, "type": "message_batch", "processing_status": "ended" if done else "in_progress",
                "request_counts": {"processing": 0 if done else n, "succeeded": n if done else 0,
                                   "errored": 0, "canceled": 0, "expired": 0},
                "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
                "ended_at": "2026-01-01T01:00:00Z" if done else None, "archived_at": None,
                "cancel_initiated_at": None,
                "results_url": f"https://api.anthropic.com/v1/messages/batches/{batch_id}/results" if done else None}

    def handle(self, request):
        path = request.url.path
        if request.method == "POST" and path == "/v1/messages/batches":
            batch_id = f"msgbatch_{len(self.batches)}"
            self.batches[batch_id] = json.loads(request.content)["requests"]
            self.polls[batch_id] = 0
            return httpx2.Response(200, json=self._status(batch_id))
        if request.method == "GET" and path.endswith("/results"):
            batch_id = path.split("/")[-2]
            lines = []
            for item in self.batches[batch_id]:
                fake = httpx2.Request("POST", "https://api.anthropic.com/v1/messages",
                                      content=json.dumps(item["params"]).encode())
                message = json.loads(super().handle(fake).content)
                lines.append({"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}})
            return httpx2.Response(200, content="\n".join(json.dumps(l) for l in lines).encode(),
                                   headers={"content-type": "application/binary"})
        if request.method == "GET" and path.startswith("/v1/messages/batches/"):
            batch_id = path.rsplit("/", 1)[1]
            self.polls[batch_id] += 1
            return httpx2.Response(200, json=self._status(batch_id))
        return super().handle(request)


def test_score_through_a_provider_batch_then_collect(planted, monkeypatch):
    from featurelens.jobs.batch_collection import collect_batches
    from featurelens.llm import providers as providers_pkg
    from featurelens.scorers.score_jobs import submit_score

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    server = FaithfulBatches()
    original = providers_pkg.build_provider
    monkeypatch.setattr(providers_pkg, "build_provider", lambda spec, **o: original(
        spec, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(server.handle)), **o))
    spec = ScoreSpec("anthropic:claude-haiku-4-5", "detection", (("n_activating", 5), ("n_random", 5)))
    submission = submit_score(planted, spec)
    assert submission.features == 9 and submission.requests == 18 and len(submission.batch_ids) == 1
    assert planted.execute("SELECT purpose FROM batches")[0][0] == "score:detection"
    assert "not finished yet" in collect_batches(planted, progress=False)[0]
    lines = collect_batches(planted, progress=False)
    assert "wrote 9 results" in lines[-1] and "0 failed" in lines[-1]
    rows = planted.sql("SELECT s.feature, e.text, s.score FROM scores s JOIN explanations e "
                       "USING (explanation_id)").to_dicts()
    names = list(PLANTED)
    right = [r["score"] for r in rows if PLANTED[names[r["feature"]]][1] == r["text"]]
    assert len(rows) == 9 and min(right) > 0.9
    assert submit_score(planted, spec).requests == 0  # nothing left to send
