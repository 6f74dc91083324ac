"""Decode steps shared across rows: the answers of one-at-a-time ``generate``, on the tiny random Llama."""

from __future__ import annotations

import asyncio
from functools import lru_cache

import pytest

from featurelens.core.host.protocols import LLMRequest
from featurelens.llm.providers import build_provider
from featurelens.llm.providers.local import decode as local_decode
from featurelens.llm.providers.local.kv_buffer import BufferLayer, packed

SHARED = ("Label the feature from its examples. Answer with one short phrase. The examples below "
          "show tokens and activations.\n\n")
DATA = ["digits 1 2 3 and 456", "def add(a, b):\n    return a + b", "the lazy dog", "(mostly) odd; {x: y}",
        "Features fire on 0123456789 and on brackets ) ] }.", "fox"]


def _requests() -> list[LLMRequest]:
    return [LLMRequest(messages=[{"role": "system", "content": SHARED}, {"role": "user", "content": data}],
                       max_tokens=cap, top_logprobs=top, stop_at_newline=stop, shared_prefix=1)
            for data, cap, top, stop in zip(DATA, (12, 3, 20, 0, 1, 16), (3, 0, 5, 0, 2, 4),
                                            (False, True, False, True, False, True))]


def _answer_all(provider, requests):
    async def go():
        return await asyncio.gather(*(provider.complete(r) for r in requests))

    return asyncio.run(go())


def _same_tokens(got, want):
    """Same text, ids and output log-probs (to float rounding: a batch's matrix products
    add in another order than one row's)."""
    assert got.text == want.text and got.output_tokens == want.output_tokens
    assert len(got.output_logprobs) == len(want.output_logprobs)
    for g, w in zip(got.output_logprobs, want.output_logprobs):
        assert g.token == w.token
        assert g.logprob == pytest.approx(w.logprob, abs=1e-5)
        assert set(g.top) == set(w.top)


@pytest.mark.parametrize("prefix_cache", [0, 4])
def test_rows_decoded_together_answer_as_generate_does_alone(tiny_model_dir, one_thread, prefix_cache):
    requests = _requests()
    alone = _answer_all(build_provider(f"local:{tiny_model_dir}", batch=1, prefix_cache=prefix_cache),
                        requests)
    provider = build_provider(f"local:{tiny_model_dir}", batch=8, prefix_cache=prefix_cache)
    calls = []
    real = local_decode.greedy

    def spy(tokenizer, model, rows, reqs, decode, prefixes=None):
        calls.append((len(rows), [p is not None for p in prefixes or []]))
        return real(tokenizer, model, rows, reqs, decode, prefixes)

    local_decode.greedy = spy
    try:
        batched = _answer_all(provider, requests)
    finally:
        local_decode.greedy = real
    assert max(n for n, _ in calls) > 1  # several rows shared decode steps
    if prefix_cache:  # each row continued the stored instructions, as it does alone
        assert all(all(used) for _, used in calls) and provider.prefixes.hits > 0
    for request, b, a in zip(requests, batched, alone):
        _same_tokens(b, a)
        assert b.input_tokens == a.input_tokens
        assert b.output_tokens <= request.max_tokens
    assert batched[3].text == "" and batched[3].output_tokens == 0  # max_tokens 0: no answer asked
    assert len({r.text for r in batched}) > 2  # rows did not leak into each other


def test_a_row_that_reaches_an_end_token_leaves_the_batch_and_the_others_go_on(tiny_model_dir, one_thread):
    import torch

    provider = build_provider(f"local:{tiny_model_dir}")
    tokenizer, model = provider._load()
    requests = [LLMRequest(prompt=SHARED + data, max_tokens=10) for data in DATA]
    rows = [provider._prompt_ids(tokenizer, r)[0].tolist() for r in requests]
    decode = lru_cache(maxsize=None)(lambda i: tokenizer.decode([i]))
    free = local_decode.greedy(tokenizer, model, rows, requests, decode)
    stop = free[0][1][2]  # the third token of the first row's answer ends generation now
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    got = local_decode.greedy(tokenizer, model, rows, requests, decode)
    for row, (_, ids, _) in zip(rows, got):
        with torch.inference_mode():
            out = model.generate(torch.tensor([row]), attention_mask=torch.ones((1, len(row)), dtype=torch.long),
                                 max_new_tokens=10, do_sample=False, temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id)
        want = out[0, len(row):].tolist()
        if tokenizer.eos_token_id in want:  # the provider's answer stops before the model's own end token
            want = want[:want.index(tokenizer.eos_token_id)]
        assert ids == want
    assert len(got[0][1]) <= 3 and any(len(ids) == 10 for _, ids, _ in got)


def test_a_model_with_a_logits_processor_is_answered_one_at_a_time(tiny_model_dir, one_thread):
    requests = _requests()[:3]
    alone_provider = build_provider(f"local:{tiny_model_dir}", batch=1)
    provider = build_provider(f"local:{tiny_model_dir}", batch=8)
    for p in (alone_provider, provider):
        p._load()[1].generation_config.repetition_penalty = 1.3
    assert not local_decode.plain_greedy(provider._load()[1])
    calls = []
    real = local_decode.greedy
    local_decode.greedy = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        batched = _answer_all(provider, requests)
    finally:
        local_decode.greedy = real
    assert calls == []
    for b, a in zip(batched, _answer_all(alone_provider, requests)):
        _same_tokens(b, a)


def test_the_cache_grows_in_place_and_past_its_room(one_thread):
    import torch

    torch.manual_seed(0)
    rows = [[(torch.randn(1, 2, n, 4), torch.randn(1, 2, n, 4))] for n in (5, 3)]
    cache, mask = packed(rows, room=2)
    layer = cache.layers[0]
    assert isinstance(layer, BufferLayer) and layer.get_seq_length() == 5
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert torch.equal(layer.keys[1, :, 2:], rows[1][0][0][0]) and torch.equal(layer.keys[1, :, :2], torch.zeros(2, 2, 4))
    storage = layer._keys.data_ptr()
    steps = [(torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)) for _ in range(4)]
    for i, (k, v) in enumerate(steps):
        keys, values = cache.update(k, v, 0)
        assert keys.shape[2] == 6 + i and torch.equal(keys[:, :, -1:], k) and torch.equal(values[:, :, -1:], v)
        if i < 2:
            assert layer._keys.data_ptr() == storage  # written into the room set aside, no copy
    assert torch.equal(layer.keys[0, :, :5], rows[0][0][0][0])  # growing past the room kept the past
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.keys.shape == (1, 2, 9, 4) and torch.equal(layer.values[0, :, -1:], steps[-1][1][1])
