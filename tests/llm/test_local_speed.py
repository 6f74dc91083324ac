"""The local provider's fast default path gives today's answers, on the tiny random Llama.

Today's path: every prompt run whole, log-probs at every prompt position
(``prefix_cache=0`` and no ``prompt_logprobs_after``). The fast path: log-probs only
where they are read (the default) and, opt-in, a declared shared prefix run once and
continued from its cache.
"""

from __future__ import annotations

import asyncio

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest, TokenLogprobs
from featurelens.llm.providers import build_provider
from featurelens.llm.providers.local import logprobs as local_logprobs
from featurelens.llm.providers.local import prefix as local_prefix
from featurelens.scorers.simulation import SimulationScorer
from featurelens.scorers.simulation_parse import target_positions
from featurelens.testing.planted_features import planted_records

SHARED = ("Label the feature from its examples. Answer with one short phrase that names the "
          "tokens it fires on, the words around them, or the topic they share.\n\n")
DATA = ["digits 1 2 3 and 456", "def add(a, b):\n    return a + b", "the lazy dog", "fox"]


def _ask(provider, request):
    return asyncio.run(provider.complete(request))


def _same_item(got: TokenLogprobs, want: TokenLogprobs, tol: float) -> None:
    assert got.token == want.token
    assert (got.logprob is None) == (want.logprob is None)
    if want.logprob is not None:
        assert got.logprob == pytest.approx(want.logprob, abs=tol)
    assert set(got.top) == set(want.top)
    for token, value in want.top.items():
        assert got.top[token] == pytest.approx(value, abs=tol)


def test_wanted_positions_cover_every_position_the_simulation_reads():
    cases = [
        ["<s>", " cat", "\t", "unknown", "\n", " dog", "\t", "unk", "nown", "\n"],  # tab alone
        ["<s>", " cat\t", "unknown", "\n", " dog", "\tunknown", "\n"],  # tab merged both ways
        ["<s>", " x", "\tunk", "nown", "\n", "\t", "?", "\n"],
    ]
    for texts in cases:
        tokens = [TokenLogprobs(t, None, {}) for t in texts]
        read = target_positions(tokens)
        assert read and set(read) <= set(local_logprobs.wanted_positions(texts, "\t"))
    assert local_logprobs.wanted_positions(["a", "b", "c"], None) == [1, 2]
    assert local_logprobs.wanted_positions(["a", "b", "c\t", "d", "\te"], "\t") == [2, 3, 4]


@pytest.mark.parametrize("prompt, after", [
    (" cat\tunknown\n dog\tunknown\n the\tunknown\n", "\t"),
    ("the lazy dog ran over the mat and the cat sat", " "),  # the marker merged into ' the', ' dog'
])
def test_sparse_prompt_logprobs_equal_the_full_pass_where_read(tiny_model_dir, one_thread, prompt, after):
    provider = build_provider(f"local:{tiny_model_dir}", prefix_cache=0)
    full = _ask(provider, LLMRequest(prompt=prompt, max_tokens=0, prompt_logprobs=5))
    sparse = _ask(provider, LLMRequest(prompt=prompt, max_tokens=0, prompt_logprobs=5,
                                       prompt_logprobs_after=after))
    texts = [item.token for item in full.prompt_logprobs]
    wanted = set(local_logprobs.wanted_positions(texts, after))
    assert any(after in texts[j] and not texts[j - 1].endswith(after) for j in wanted) or after == "\t"
    assert 0 < len(wanted) < len(texts) - 1
    assert len(sparse.prompt_logprobs) == len(full.prompt_logprobs)
    for j, (got, want) in enumerate(zip(sparse.prompt_logprobs, full.prompt_logprobs)):
        if j in wanted:
            _same_item(got, want, 1e-6)
        else:
            assert got.token == want.token and got.logprob is None and got.top == {}


def test_simulation_scores_are_unchanged_by_the_fast_path(tiny_model_dir, one_thread):
    """Scorer requests through the default provider and through today's path."""
    old = build_provider(f"local:{tiny_model_dir}", prefix_cache=0)
    new = build_provider(f"local:{tiny_model_dir}", prefix_cache=4)
    scorer = SimulationScorer(n_activating=2, n_random=1, window=8, adaptive=False)
    record = planted_records(length=8, seed=3)[0]
    requests = scorer.requests(record, "numbers", new.capabilities)
    assert requests and all(r.prompt_logprobs_after == "\t" for r in requests)
    today = [LLMRequest(**{**r.__dict__, "prompt_logprobs_after": None}) for r in requests]
    fast = [_ask(new, r) for r in requests]
    slow = [_ask(old, r) for r in today]
    assert new.prefixes is not None and new.prefixes.hits >= len(requests) - 1
    for a, b in zip(fast, slow):
        positions = target_positions(b.prompt_logprobs, scorer.lines.placeholder)
        assert positions == target_positions(a.prompt_logprobs, scorer.lines.placeholder) and positions
        for j in positions:
            _same_item(a.prompt_logprobs[j], b.prompt_logprobs[j], 1e-5)
    got = scorer.score(record, "numbers", fast, new.capabilities)
    want = scorer.score(record, "numbers", slow, old.capabilities)
    assert got.status == want.status
    if want.score is not None:
        assert got.score == pytest.approx(want.score, abs=1e-4)  # a correlation of near-uniform guesses


def test_generation_after_a_cached_prefix_is_token_for_token_the_same(tiny_model_dir, one_thread):
    old = build_provider(f"local:{tiny_model_dir}", prefix_cache=0)
    new = build_provider(f"local:{tiny_model_dir}", prefix_cache=2)
    for data, cap in zip(DATA, (12, 3, 20, 7)):
        request = LLMRequest(messages=[{"role": "system", "content": SHARED}, {"role": "user", "content": data}],
                             max_tokens=cap, top_logprobs=3, shared_prefix=1)
        a, b = _ask(new, request), _ask(old, request)
        assert a.text == b.text and a.output_tokens == b.output_tokens and a.input_tokens == b.input_tokens
        assert len(a.output_logprobs) == len(b.output_logprobs)
        for got, want in zip(a.output_logprobs, b.output_logprobs):
            _same_item(got, want, 1e-5)
    assert new.prefixes.hits == len(DATA) - 1  # the system turn ran once


def test_prompt_logprobs_after_a_cached_prefix_match_the_whole_prompt(tiny_model_dir, one_thread):
    old = build_provider(f"local:{tiny_model_dir}", prefix_cache=0)
    new = build_provider(f"local:{tiny_model_dir}", prefix_cache=4)
    for data in DATA:
        request = LLMRequest(prompt=SHARED + data, max_tokens=0, prompt_logprobs=4,
                             shared_prompt_chars=len(SHARED))
        a, b = _ask(new, request), _ask(old, request)
        assert len(a.prompt_logprobs) == len(b.prompt_logprobs) == a.input_tokens
        for got, want in zip(a.prompt_logprobs, b.prompt_logprobs):
            _same_item(got, want, 1e-5)
    assert new.prefixes.hits == len(DATA) - 1


def test_the_prefix_lru_keeps_the_most_recent(tiny_model_dir, one_thread):
    provider = build_provider(f"local:{tiny_model_dir}", prefix_cache=1)
    prefixes = [SHARED, SHARED.upper()]
    for shared in prefixes + prefixes[:1]:
        _ask(provider, LLMRequest(prompt=shared + "fox", max_tokens=0, prompt_logprobs=1,
                                  shared_prompt_chars=len(shared)))
    assert provider.prefixes.hits == 0 and len(provider.prefixes._entries) == 1
    _ask(provider, LLMRequest(prompt=SHARED + "dog", max_tokens=0, prompt_logprobs=1,
                              shared_prompt_chars=len(SHARED)))
    assert provider.prefixes.hits == 1


def test_split_attention_equals_masked_attention(tiny_model_dir, one_thread):
    """Two fused kernels merged by log-sum-exp give what the explicit mask gives."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.arange(3, 83)[None] % 300
    with torch.inference_mode():
        cache, keyword = DynamicCache(), local_prefix.cache_keyword(model.base_model)
        model.base_model(input_ids=ids[:, :40], use_cache=True, **{keyword: cache})
        prefix = local_prefix.Prefix(tuple(ids[0, :40].tolist()),
                                     [(layer.keys, layer.values) for layer in cache.layers], None)
        masked = model.base_model(input_ids=ids[:, 40:], position_ids=torch.arange(40, 80)[None],
                                  **{keyword: local_prefix.fresh_cache(prefix)}).last_hidden_state
        assert local_prefix.install(model)
        with local_prefix.continuing():
            split = model.base_model(input_ids=ids[:, 40:], position_ids=torch.arange(40, 80)[None],
                                     **{keyword: local_prefix.fresh_cache(prefix)}).last_hidden_state
        whole = model.base_model(input_ids=ids).last_hidden_state[:, 40:]
    assert torch.allclose(split, masked, atol=1e-5) and torch.allclose(split, whole, atol=1e-5)


def test_bad_prefix_cache_option_is_one_sentence(tiny_model_dir):
    with pytest.raises(FeaturelensError, match="prefix_cache option must be a whole number >= 0"):
        build_provider(f"local:{tiny_model_dir}", prefix_cache="lots")
