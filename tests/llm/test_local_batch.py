"""The local provider in batches: the same answers as one at a time, on the tiny random Llama."""

from __future__ import annotations

import asyncio

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest
from featurelens.llm.providers import build_provider
from featurelens.llm.providers.local import decode as local_decode
from featurelens.llm.providers.local.batch_dispatch import passes

SHARED = "Label the feature from its examples. Answer with one short phrase.\n\n"
DATA = ["digits 1 2 3 and 456", "def add(a, b):\n    return a + b", "the lazy dog", "(mostly) odd; {x: y}",
        "Features fire on 0123456789 and on brackets ) ] }.", "fox"]


def _answer_all(provider, requests):
    async def go():
        return await asyncio.gather(*(provider.complete(r) for r in requests))

    return asyncio.run(go())


def _same(batched, alone, tol=1e-4):
    assert batched.text == alone.text
    assert batched.input_tokens == alone.input_tokens and batched.output_tokens == alone.output_tokens
    for got, want in ((batched.output_logprobs, alone.output_logprobs),
                      (batched.prompt_logprobs, alone.prompt_logprobs)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.token == w.token
            assert (g.logprob is None) == (w.logprob is None)
            if w.logprob is not None:
                assert g.logprob == pytest.approx(w.logprob, abs=tol)
            assert set(g.top) == set(w.top)
            for token, value in w.top.items():
                assert g.top[token] == pytest.approx(value, abs=tol)


def test_batched_generation_is_the_same_as_one_at_a_time(tiny_model_dir, one_thread):
    requests = [LLMRequest(messages=[{"role": "system", "content": SHARED},
                                     {"role": "user", "content": data}],
                           max_tokens=cap, top_logprobs=top, stop_at_newline=stop)
                for data, cap, top, stop in zip(DATA, (12, 3, 20, 7, 1, 16), (3, 0, 5, 0, 2, 4),
                                                (False, True, False, True, False, True))]
    alone = _answer_all(build_provider(f"local:{tiny_model_dir}", batch=1), requests)
    provider = build_provider(f"local:{tiny_model_dir}", batch=8)
    batched = _answer_all(provider, requests)
    assert max(provider._batcher.batch_sizes) > 1  # concurrent requests were answered together
    for request, b, a in zip(requests, batched, alone):
        _same(b, a)
        assert 0 < b.output_tokens <= request.max_tokens
        if request.stop_at_newline:
            assert "\n" not in b.text
    assert len({r.text for r in batched}) > 1  # rows did not leak into each other


def test_batched_prompt_logprobs_are_the_same_as_one_at_a_time(tiny_model_dir, one_thread):
    prompts = [SHARED + data + "\tunknown\n" for data in DATA]
    requests = [LLMRequest(prompt=p, max_tokens=0, prompt_logprobs=k) for p, k in zip(prompts, (4, 6, 4, 2, 4, 8))]
    alone = _answer_all(build_provider(f"local:{tiny_model_dir}", batch=1), requests)
    provider = build_provider(f"local:{tiny_model_dir}", batch=4)
    batched = _answer_all(provider, requests)
    assert provider._batcher.batch_sizes and max(provider._batcher.batch_sizes) > 1
    for b, a in zip(batched, alone):
        assert b.output_tokens == 0 and b.text == ""
        _same(b, a)


def test_passes_bound_padded_tokens_and_keep_every_request():
    lengths = {0: 10, 1: 300, 2: 12, 3: 11, 4: 5000}
    groups = passes(lengths, batch_tokens=40)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    for group in groups:
        assert len(group) == 1 or len(group) * max(lengths[i] for i in group) <= 40
    assert [0, 3, 2] in groups and [4] in groups  # a prompt longer than the limit runs alone


def test_a_mixed_batch_answers_prompt_logprobs_and_generation_and_fails_alone(tiny_model_dir, one_thread,
                                                                             monkeypatch):
    provider = build_provider(f"local:{tiny_model_dir}", batch=8)
    both = LLMRequest(prompt=SHARED + "digits 1 2 3", max_tokens=4, prompt_logprobs=3)
    broken = LLMRequest(messages=[{"role": "user"}])  # no content: its prompt cannot be built
    plain = LLMRequest(prompt=SHARED + "the lazy dog", max_tokens=0, prompt_logprobs=3)
    gen = LLMRequest(prompt=SHARED + "fox", max_tokens=5)
    alone = _answer_all(build_provider(f"local:{tiny_model_dir}", batch=1), [both, plain, gen])
    results = asyncio.run(_gather_settled(provider, [both, broken, plain, gen]))
    _same(results[0], alone[0])
    _same(results[2], alone[1])
    _same(results[3], alone[2])
    assert isinstance(results[1], KeyError)

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(local_decode, "greedy", fail)  # a failing pass fails its own requests
    results = asyncio.run(_gather_settled(provider, [gen, both, plain]))
    assert isinstance(results[0], RuntimeError)
    _same(results[1], alone[0])
    _same(results[2], alone[1])


async def _gather_settled(provider, requests):
    return await asyncio.gather(*(provider.complete(r) for r in requests), return_exceptions=True)


def test_a_bad_batch_option_is_one_sentence(tiny_model_dir):
    with pytest.raises(FeaturelensError, match="batch option must be a whole number"):
        build_provider(f"local:{tiny_model_dir}", batch="many")
