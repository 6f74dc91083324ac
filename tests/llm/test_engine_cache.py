"""The response cache: keys and a lossless round trip through the store."""

from __future__ import annotations

from featurelens.core.host.protocols import LLMRequest, LLMResponse, TokenLogprobs
from featurelens.llm import cache


def test_keys_depend_on_provider_model_and_request_only():
    request = LLMRequest(messages=[{"role": "user", "content": "x"}], max_tokens=10)
    key = cache.cache_key("openai", "gpt-4o-mini", request)
    assert len(key) == 64 and key == cache.cache_key("openai", "gpt-4o-mini",
                                                     LLMRequest(messages=[{"role": "user", "content": "x"}],
                                                                max_tokens=10, purpose="score:x"))
    assert key != cache.cache_key("openai", "gpt-4o", request)
    assert key != cache.cache_key("anthropic", "gpt-4o-mini", request)
    assert key != cache.cache_key("openai", "gpt-4o-mini", LLMRequest(
        messages=[{"role": "user", "content": "x"}], max_tokens=11))


def test_round_trip_through_the_store_keeps_logprobs(store):
    response = LLMResponse(text="Explanation: ünïcode", input_tokens=5, output_tokens=2,
                           cached_input_tokens=3,
                           output_logprobs=[TokenLogprobs("a", -0.5, {"a": -0.5, "b": -1.0})],
                           prompt_logprobs=[TokenLogprobs("<s>", None, {}),
                                            TokenLogprobs("0", -0.1, {"0": -0.1, "10": -3.0})],
                           raw={"huge": "payload"})
    store.execute("INSERT INTO llm_cache (cache_key, response) VALUES (?, ?)",
                  ["k1", cache.response_to_json(response)])
    found = cache.lookup(store, ["k1", "missing"])
    assert set(found) == {"k1"}
    back = found["k1"]
    assert back.raw == {}
    back.raw = response.raw
    assert back == response


def test_a_checked_row_is_the_same_response_and_a_wrong_shape_is_none():
    text = cache.response_to_json(LLMResponse(
        text="Explanation: x", input_tokens=7, output_tokens=1,
        output_logprobs=[TokenLogprobs("x", -0.2, {"x": -0.2})]))
    assert cache.checked_response(text) == cache.response_from_json(text)
    for wrong in ('{"text": 3}', '{"text": "a", "input_tokens": -1}', '["text"]', "not json",
                  '{"text": "a", "output_logprobs": [{"token": 1}]}'):
        assert cache.checked_response(wrong) is None, wrong
