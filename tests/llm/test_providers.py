"""The openai and anthropic providers, through their real SDKs against HTTP-level fakes."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from llm_fixtures import FakeAPI, chat_json, message_json

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest
from featurelens.llm.providers import build_provider

SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def run(coro):
    return asyncio.run(coro)


def test_openai_chat_success_sends_request_and_reads_usage_and_logprobs(keys):
    api = FakeAPI([(200, chat_json("Explanation: digits", 120, 4, cached=64, logprobs=[
        {"token": "7", "logprob": -0.1, "bytes": None,
         "top_logprobs": [{"token": "7", "logprob": -0.1, "bytes": None},
                          {"token": "8", "logprob": -2.5, "bytes": None}]}]), None)])
    provider = build_provider("openai:gpt-4o-mini", http_client=api.client())
    request = LLMRequest(messages=[{"role": "system", "content": "rules"},
                                   {"role": "user", "content": "data"}],
                         max_tokens=7, top_logprobs=2, json_output=True)
    response = run(provider.complete(request))
    assert response.text == "Explanation: digits"
    assert (response.input_tokens, response.output_tokens, response.cached_input_tokens) == (120, 4, 64)
    assert response.output_logprobs[0].token == "7"
    assert response.output_logprobs[0].top == {"7": -0.1, "8": -2.5}
    sent = api.bodies()[0]
    assert str(api.requests[0].url).endswith("/chat/completions")
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 7
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert sent["response_format"] == {"type": "json_object"}
    assert "prompt_cache_key" not in sent  # no shared prefix declared


def test_openai_gets_a_prompt_cache_key_for_the_shared_prefix_but_other_servers_do_not(keys):
    def request(user):
        return LLMRequest(messages=[{"role": "system", "content": "rules"},
                                    {"role": "user", "content": user}], shared_prefix=1)

    api = FakeAPI(default=lambda r: (200, chat_json("x"), None))
    provider = build_provider("openai:gpt-4o-mini", http_client=api.client())
    run(provider.complete(request("feature 1")))
    run(provider.complete(request("feature 2")))
    first, second = api.bodies()
    assert first["prompt_cache_key"] == second["prompt_cache_key"]
    assert first["prompt_cache_key"].startswith("featurelens-")
    local = FakeAPI(default=lambda r: (200, chat_json("x"), None))
    vllm = build_provider("openai:m", base_url="http://127.0.0.1:8000/v1", http_client=local.client())
    run(vllm.complete(request("feature 1")))
    assert "prompt_cache_key" not in local.bodies()[0]
    assert api.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_openai_prompt_logprobs_use_completions_echo(keys):
    body = {"id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length", "text": "a\tunknownX",
                         "logprobs": {"tokens": ["a", "\t", "unknown", "X"],
                                      "token_logprobs": [None, -0.5, -1.0, -2.0],
                                      "top_logprobs": [None, {"\t": -0.5}, {"0": -0.2, "1": -1.9},
                                                       {"X": -2.0}],
                                      "text_offset": [0, 1, 2, 9]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    api = FakeAPI([(200, body, None)])
    provider = build_provider("openai:my-model", base_url="http://vllm.local/v1", http_client=api.client())
    assert "prompt_logprobs" in provider.capabilities
    response = run(provider.complete(LLMRequest(prompt="a\tunknown", max_tokens=0, prompt_logprobs=5)))
    sent = api.bodies()[0]
    assert str(api.requests[0].url) == "http://vllm.local/v1/completions"
    assert sent["echo"] is True and sent["logprobs"] == 5 and sent["max_tokens"] == 1
    assert [t.token for t in response.prompt_logprobs] == ["a", "\t", "unknown"]
    assert response.prompt_logprobs[0].logprob is None
    assert response.prompt_logprobs[2].top == {"0": -0.2, "1": -1.9}
    assert [t.token for t in response.output_logprobs] == ["X"]
    assert response.text == "X"


def test_openai_plain_api_does_not_claim_prompt_logprobs(keys):
    provider = build_provider("openai:gpt-4o-mini")
    assert "prompt_logprobs" not in provider.capabilities
    assert "output_logprobs" in provider.capabilities


def test_missing_keys_name_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(FeaturelensError, match="set the OPENAI_API_KEY environment variable"):
        build_provider("openai:gpt-4o-mini")
    with pytest.raises(FeaturelensError, match="set the ANTHROPIC_API_KEY environment variable"):
        build_provider("anthropic:claude-haiku-4-5")


def test_local_openai_compatible_server_needs_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    api = FakeAPI([(200, chat_json("Explanation: x"), None)])
    provider = build_provider("openai:llama3:8b", http_client=api.client())
    assert provider.model == "llama3:8b"
    assert run(provider.complete(LLMRequest(messages=[{"role": "user", "content": "hi"}]))).text
    assert str(api.requests[0].url) == "http://127.0.0.1:9/v1/chat/completions"


def test_anthropic_marks_the_shared_prefix_for_caching_and_counts_cached_tokens(keys):
    api = FakeAPI([(200, message_json("Explanation: brackets", input_tokens=30, cache_read=900,
                                      cache_write=0, output_tokens=6), None)])
    provider = build_provider("anthropic:claude-haiku-4-5", http_client=api.client())
    request = LLMRequest(messages=[
        {"role": "system", "content": "instructions"},
        {"role": "user", "content": "few-shot question"},
        {"role": "assistant", "content": "few-shot answer"},
        {"role": "user", "content": "this feature's examples"}], shared_prefix=3, max_tokens=50)
    response = run(provider.complete(request))
    assert response.text == "Explanation: brackets"
    assert (response.input_tokens, response.cached_input_tokens, response.output_tokens) == (930, 900, 6)
    sent = api.bodies()[0]
    assert sent["system"] == [{"type": "text", "text": "instructions"}]
    assert "cache_control" not in sent["messages"][0]["content"][0]
    assert sent["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in sent["messages"][2]["content"][0]
    headers = api.requests[0].headers
    assert SECRET in (headers.get("x-api-key") or headers.get("authorization") or "")


def test_anthropic_refuses_logprob_requests(keys):
    provider = build_provider("anthropic:claude-haiku-4-5", http_client=FakeAPI().client())
    assert "prompt_logprobs" not in provider.capabilities
    with pytest.raises(ValueError, match="no log-probabilities"):
        run(provider.complete(LLMRequest(prompt="x", prompt_logprobs=5)))


def test_timeout_surfaces_as_a_retryable_error(keys):
    from featurelens.llm.retry import classify

    api = FakeAPI([httpx2.ReadTimeout("slow")])
    provider = build_provider("openai:gpt-4o-mini", http_client=api.client())
    with pytest.raises(Exception) as caught:
        run(provider.complete(LLMRequest(messages=[{"role": "user", "content": "x"}])))
    assert classify(caught.value).retryable
    assert len(api.requests) == 1  # the SDK's own retries are off: the engine owns the policy


def test_unknown_provider_option_is_one_sentence(keys):
    with pytest.raises(FeaturelensError, match="does not take the option"):
        build_provider("openai:gpt-4o-mini", colour="blue")


def test_anthropic_rate_limit_and_overload_are_retried_by_the_engine(keys, store, monkeypatch):
    from llm_fixtures import fill, use_test_explainer

    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings
    from featurelens.llm.retry import RetryPolicy

    use_test_explainer(monkeypatch)
    fill(store, 3)
    ok = (200, message_json("LABEL: from claude"), None)
    api = FakeAPI([(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                    {"retry-after": "0"}),
                   (529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, None)],
                  default=lambda r: ok)
    provider = build_provider("anthropic:claude-haiku-4-5", http_client=api.client())
    stats = explain_features(store, ExplainSpec("anthropic:claude-haiku-4-5", "echo"), provider=provider,
                             settings=EngineSettings(concurrency=1, progress=False,
                                                     retry=RetryPolicy(3, 0.01, 0.05)))
    assert (stats.succeeded, stats.retries, len(api.requests)) == (3, 2, 5)
    cost = store.execute("SELECT sum(cost_usd) FROM llm_calls WHERE status = 'ok'")[0][0]
    assert cost == pytest.approx(3 * (10 * 1.0 + 5 * 5.0) / 1e6)  # claude-haiku-4-5 list price


def test_static_capabilities_on_the_factories_match_the_providers():
    from featurelens.core.host.manager import get_registry
    from featurelens.llm.providers.anthropic_provider import AnthropicProvider
    from featurelens.llm.providers.local.provider import LocalProvider

    registry = get_registry()
    assert registry.get("llm_provider", "anthropic:x").info.capabilities == AnthropicProvider.capabilities
    assert registry.get("llm_provider", "local:x").info.capabilities == LocalProvider.capabilities
    assert not hasattr(registry.get("llm_provider", "openai:x").factory, "capabilities")
