"""The ``local`` provider on a real (tiny, random) Llama: prompt log-probs and generation."""

from __future__ import annotations

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest
from featurelens.llm.providers import build_provider
from featurelens.llm.providers.local import logprobs as local_logprobs
from featurelens.llm.providers.local import provider as local_provider


def test_prompt_logprobs_match_a_full_forward_pass(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(local_logprobs, "_SLICE", 3)  # several slices through the output head
    provider = build_provider(f"local:{tiny_model_dir}")
    prompt = "The quick brown fox jumps over 123 times."
    response = asyncio.run(provider.complete(LLMRequest(prompt=prompt, max_tokens=0, prompt_logprobs=4)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    assert len(response.prompt_logprobs) == ids.shape[1] == response.input_tokens
    assert response.prompt_logprobs[0].logprob is None
    assert response.output_tokens == 0 and response.text == ""
    for t in range(1, ids.shape[1]):
        item = response.prompt_logprobs[t]
        assert item.token == tokenizer.decode([int(ids[0, t])])
        assert item.logprob == pytest.approx(float(logp[t - 1, ids[0, t]]), abs=1e-4)
        values, indices = logp[t - 1].topk(4)
        expected: dict[str, float] = {}
        for i, v in zip(indices, values):  # ids that decode alike keep the likeliest
            expected.setdefault(tokenizer.decode([int(i)]), float(v))
        assert set(item.top) == set(expected)
        for token, value in expected.items():
            assert item.top[token] == pytest.approx(value, abs=1e-4)


def test_generation_counts_tokens_and_gives_output_logprobs(tiny_model_dir):
    provider = build_provider(f"local:{tiny_model_dir}")
    request = LLMRequest(messages=[{"role": "system", "content": "Label the feature."},
                                   {"role": "user", "content": "digits 1 2 3"}],
                         max_tokens=6, top_logprobs=3)
    response = asyncio.run(provider.complete(request))
    assert 0 < response.output_tokens <= 6
    assert response.input_tokens > 5
    assert len(response.output_logprobs) == response.output_tokens
    first = response.output_logprobs[0]
    assert 1 <= len(first.top) <= 3 and first.logprob <= 0.0  # ids may decode alike
    assert first.logprob == pytest.approx(max(first.top.values()), abs=1e-5)  # greedy
    again = asyncio.run(provider.complete(request))
    assert again.text == response.text  # temperature 0 is deterministic


def test_bad_local_model_is_one_sentence(tmp_path):
    with pytest.raises(FeaturelensError, match="neither the embedded model"):
        build_provider(f"local:{tmp_path / 'missing'}")


@pytest.mark.slow
def test_embedded_smollm2_explains_features_from_the_cli(cli, store_path):
    from llm_fixtures import fill

    import featurelens

    with featurelens.open_store(store_path) as store:
        fill(store, 4)
    result = cli("explain", "--llm", "local:smollm2", "--limit", "2", "--no-progress",
                 "--store", store_path)
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        done = store.execute("SELECT count(*) FROM explanations")[0][0]
        failed = store.execute("SELECT count(*) FROM failures")[0][0]
    assert done + failed == 2 and done >= 1
