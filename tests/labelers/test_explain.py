"""The batch engine on a real DuckDB store, through the real openai SDK against HTTP fakes."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest
from llm_fixtures import FakeAPI, ScriptedProvider, chat_json, fill, use_test_explainer

from featurelens.core.errors import FeaturelensError
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.llm.engine import EngineSettings
from featurelens.llm.providers import build_provider
from featurelens.llm.ratelimit import RateLimiter
from featurelens.llm.retry import RetryPolicy

SECRET = "sk-test-SECRET-abcdef"
FAST = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)


@pytest.fixture
def env(monkeypatch, store):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    use_test_explainer(monkeypatch)
    fill(store, 6)
    return store


def explain(store, api, **settings):
    provider = build_provider("openai:gpt-4o-mini", http_client=api.client())
    opts = {"concurrency": 4, "retry": FAST, "progress": False, **settings}
    return explain_features(store, ExplainSpec("openai:gpt-4o-mini", "echo"), provider=provider,
                            settings=EngineSettings(**opts))


def counts(store, table):
    return store.execute(f"SELECT count(*) FROM {table}")[0][0]


def test_success_writes_explanations_calls_and_cache_and_a_rerun_pays_nothing(env):
    api = FakeAPI(default=lambda r: (200, chat_json("LABEL: digits and numbers", 1000, 10, cached=400), None))
    stats = explain(env, api)
    assert (stats.succeeded, stats.failed, stats.calls) == (6, 0, 6)
    assert counts(env, "explanations") == 6 and counts(env, "llm_cache") == 6
    row = env.execute("SELECT sum(input_tokens), sum(cached_input_tokens), sum(output_tokens), "
                      "sum(cost_usd), min(latency_s) FROM llm_calls WHERE status = 'ok'")[0]
    assert row[:3] == (6000, 2400, 60)
    # gpt-4o-mini: 0.15 $/M fresh input, 0.075 cached, 0.60 output
    assert row[3] == pytest.approx(6 * (600 * 0.15 + 400 * 0.075 + 10 * 0.60) / 1e6)
    assert row[4] >= 0
    # sent the shared instruction first
    assert api.bodies()[0]["messages"][0]["role"] == "system"
    again = explain(env, FakeAPI(default=AssertionError("no request may be sent")))
    assert (again.skipped, again.calls, again.succeeded) == (6, 0, 0)
    assert counts(env, "explanations") == 6
    # a fresh run with the same requests but explanations deleted is answered from the cache
    env.execute("DELETE FROM explanations")
    cached = explain(env, FakeAPI(default=AssertionError("no request may be sent")))
    assert (cached.cached_calls, cached.calls, cached.succeeded) == (6, 0, 6)
    assert env.execute("SELECT count(*) FROM llm_calls WHERE status = 'cached'")[0][0] == 6


def test_429_honours_retry_after(env):
    ok = (200, chat_json("LABEL: x"), None)
    api = FakeAPI([(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"retry-after": "0.4"})],
                  default=lambda r: ok)
    stats = explain(env, api, concurrency=2)
    assert stats.succeeded == 6 and stats.retries == 1
    # the quota pause holds back every request, not only the one that got the 429: apart
    # from those already on their way when the answer came, the rest wait out the pause
    offsets = [t - api.times[0] for t in api.times]
    assert len(offsets) == 7
    assert sum(1 for o in offsets if o >= 0.4) >= 3


def test_500_and_timeouts_are_retried(env):
    ok = (200, chat_json("LABEL: x"), None)
    api = FakeAPI([(500, {"error": {"message": "boom"}}, None), httpx2.ReadTimeout("slow"),
                   (503, {"error": {"message": "busy"}}, None)], default=lambda r: ok)
    stats = explain(env, api, concurrency=1)
    assert (stats.succeeded, stats.failed, stats.retries) == (6, 0, 3)


def test_persistent_errors_become_failures_with_reasons_never_empty_explanations(env):
    api = FakeAPI(default=lambda r: (500, {"error": {"message": "down"}}, None))
    stats = explain(env, api)
    assert (stats.succeeded, stats.failed) == (0, 6)
    assert counts(env, "explanations") == 0
    reasons = [r[0] for r in env.execute("SELECT reason FROM failures")]
    assert len(reasons) == 6 and all("HTTP 500" in r for r in reasons)
    assert env.execute("SELECT count(*) FROM llm_calls WHERE status = 'error'")[0][0] == 6
    assert len(api.requests) == 6 * FAST.max_attempts


def test_malformed_answers_are_failures_and_a_rerun_retries_them(env):
    api = FakeAPI(default=lambda r: (200, chat_json("I am not sure what this is."), None))
    stats = explain(env, api)
    assert (stats.succeeded, stats.failed) == (0, 6)
    assert counts(env, "explanations") == 0
    assert all("unusable answer" in r[0] for r in env.execute("SELECT reason FROM failures"))
    # a garbage HTTP body is a failure too, not a crash
    env.execute("DELETE FROM llm_cache")
    garbage = FakeAPI(default=lambda r: httpx2.Response(200, content=b"<html>oops</html>"))
    garbage_stats = explain(env, garbage)
    assert garbage_stats.failed == 6 and counts(env, "explanations") == 0


def test_rejected_key_stops_the_run_without_leaking_it(env):
    api = FakeAPI(default=lambda r: (401, {"error": {"message": "Incorrect API key provided"}}, None))
    with pytest.raises(FeaturelensError) as caught:
        explain(env, api)
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message and SECRET not in message
    assert env.execute("SELECT status FROM runs")[0][0] == "failed"
    logged = " ".join(str(r) for r in env.execute("SELECT * FROM llm_calls"))
    logged += " ".join(str(r) for r in env.execute("SELECT * FROM failures"))
    logged += " ".join(str(r) for r in env.execute("SELECT * FROM runs"))
    assert SECRET not in logged


def test_concurrency_is_bounded(monkeypatch, store):
    use_test_explainer(monkeypatch)
    fill(store, 40)
    provider = ScriptedProvider(delay=0.02)
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini", "echo"), provider=provider,
                             settings=EngineSettings(concurrency=3, progress=False))
    assert stats.succeeded == 40 and provider.max_in_flight == 3


def test_token_rate_limit_makes_requests_wait():
    async def go():
        limiter = RateLimiter(tpm=600)  # 10 tokens a second, one minute of burst
        start = time.monotonic()
        await limiter.acquire(600)
        await limiter.acquire(5)
        return time.monotonic() - start

    assert 0.4 <= asyncio.run(go()) < 1.5


def test_failures_of_one_feature_do_not_stop_the_others(monkeypatch, store):
    use_test_explainer(monkeypatch)
    fill(store, 10)

    def answer(request):
        return RuntimeError("connection reset") if "feature 4:" in request.messages[-1]["content"] \
            else f"LABEL: {request.messages[-1]['content']}"

    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini", "echo"),
                             provider=ScriptedProvider(answer),
                             settings=EngineSettings(progress=False, retry=FAST))
    assert (stats.succeeded, stats.failed) == (9, 1)
    assert store.execute("SELECT feature FROM failures")[0][0] == 4


def test_a_feature_without_examples_is_a_failure_not_a_crash(monkeypatch, store):
    use_test_explainer(monkeypatch)
    fill(store, 5)
    store.execute("DELETE FROM examples WHERE feature = 3")
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini", "echo"),
                             provider=ScriptedProvider(),
                             settings=EngineSettings(progress=False))
    assert (stats.succeeded, stats.failed, stats.calls) == (4, 1, 4)
    assert store.execute("SELECT feature, reason FROM failures")[0] == (
        3, "feature 3 has no stored examples to explain")


def test_identical_requests_in_flight_are_sent_once(monkeypatch, store):
    from llm_fixtures import EchoExplainer

    from featurelens.core.host.protocols import LLMRequest

    use_test_explainer(monkeypatch)
    monkeypatch.setattr(EchoExplainer, "requests", lambda self, record: [
        LLMRequest(messages=[{"role": "user", "content": "the same window"}], max_tokens=8)])
    fill(store, 6)
    provider = ScriptedProvider(delay=0.05)
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini", "echo"), provider=provider,
                             settings=EngineSettings(concurrency=8, progress=False))
    assert (stats.succeeded, provider.calls, stats.calls, stats.cached_calls) == (6, 1, 1, 5)
    assert store.execute("SELECT list(status ORDER BY status) FROM llm_calls")[0][0] == \
        ["cached"] * 5 + ["ok"]
