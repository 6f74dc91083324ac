"""A local batch split across one-core workers, with the shared prefix run once (the
defaults), gives the answers of one request at a time with every prompt run whole (tiny
random Llama): explanations token for token, log-probs to 1e-5, simulation scores to 1e-5."""

from __future__ import annotations

import asyncio
import threading

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest
from featurelens.llm.providers import build_provider
from featurelens.llm.providers.local.provider import PREFIXES
from featurelens.llm.providers.local.workers import (
    ModelWorkers,
    default_workers,
    shards,
    split_batches,
)
from featurelens.scorers.simulation import SimulationScorer
from featurelens.testing.planted_features import planted_records

SHARED = ("Label the feature from its examples. Answer with one short phrase that names the "
          "tokens it fires on, the words around them, or the topic they share.\n\n")
DATA = ["digits 1 2 3 and 456", "def add(a, b):\n    return a + b", "the lazy dog", "(mostly) odd; {x: y}",
        "Features fire on 0123456789 and on brackets ) ] }.", "fox"]
TOL = 1e-5


def _answer_all(provider, requests):
    async def go():
        return await asyncio.gather(*(provider.complete(r) for r in requests))

    return asyncio.run(go())


def _same(got, want):
    assert got.text == want.text
    assert (got.input_tokens, got.output_tokens) == (want.input_tokens, want.output_tokens)
    for g_list, w_list in ((got.output_logprobs, want.output_logprobs), (got.prompt_logprobs, want.prompt_logprobs)):
        assert [g.token for g in g_list] == [w.token for w in w_list]
        for g, w in zip(g_list, w_list):
            assert (g.logprob is None) == (w.logprob is None)
            if w.logprob is not None:
                assert g.logprob == pytest.approx(w.logprob, abs=TOL)
            assert set(g.top) == set(w.top)
            for token, value in w.top.items():
                assert g.top[token] == pytest.approx(value, abs=TOL)


def _mixed_requests() -> list[LLMRequest]:
    explain = [LLMRequest(messages=[{"role": "system", "content": SHARED}, {"role": "user", "content": d}],
                          max_tokens=cap, top_logprobs=top, stop_at_newline=stop, shared_prefix=1)
               for d, cap, top, stop in zip(DATA, (12, 3, 20, 7, 1, 16), (3, 0, 5, 0, 2, 4),
                                            (False, True, False, True, False, True))]
    simulate = [LLMRequest(prompt=SHARED + d + "\tunknown\n x\tunknown\n", max_tokens=0, prompt_logprobs=4,
                           shared_prompt_chars=len(SHARED), prompt_logprobs_after="\t") for d in DATA]
    return explain + simulate


def _before(model_dir):
    """The path before one-core workers and a default prefix: one request at a time, prompts whole."""
    return build_provider(f"local:{model_dir}", batch=1, prefix_cache=0, workers=1)


@pytest.mark.parametrize("options", [{"workers": 3, "prefix_cache": 0}, {"workers": 3, "prefix_cache": 4}, {}],
                         ids=["workers", "workers+prefix", "defaults"])
def test_workers_answer_as_one_request_at_a_time(tiny_model_dir, options):
    requests = _mixed_requests()
    alone = _answer_all(_before(tiny_model_dir), requests)
    provider = build_provider(f"local:{tiny_model_dir}", **options)
    split = _answer_all(provider, requests)
    assert max(provider._batcher.batch_sizes) > 3  # batches were big enough to be split
    if provider.workers > 1:
        assert provider._workers is not None and provider._workers.threads() == [1] * provider.workers
    for got, want in zip(split, alone):
        _same(got, want)
    if options.get("prefix_cache", 1):
        assert provider.prefixes.hits > 0  # the shared prefixes were reused across workers
    else:
        assert provider.prefixes is None
    assert len({r.text for r in split[:len(DATA)]}) > 1  # rows did not leak into each other


def test_simulation_scores_through_the_defaults_match_the_path_before(tiny_model_dir):
    scorer = SimulationScorer(n_activating=4, n_random=4, window=8, adaptive=False, per_prompt=4)
    records = planted_records(length=8, seed=5)[:3]
    before, now = _before(tiny_model_dir), build_provider(f"local:{tiny_model_dir}")
    assert now.prefixes is not None and now.prefixes.size == PREFIXES and now.batch == 8
    per_feature = [scorer.requests(record, "numbers", now.capabilities) for record in records]
    flat = [r for requests in per_feature for r in requests]
    got_all, want_all = _answer_all(now, flat), _answer_all(before, flat)
    assert now.prefixes.hits > 0
    at = 0
    for record, requests in zip(records, per_feature):
        got = scorer.score(record, "numbers", got_all[at:at + len(requests)], now.capabilities)
        want = scorer.score(record, "numbers", want_all[at:at + len(requests)], before.capabilities)
        at += len(requests)
        assert got.status == want.status and want.score is not None
        # the random model's guesses are near uniform, so the correlation magnifies rounding
        # (SmolLM2: 2e-8, benchmarks/local_workers.py asserts 1e-6)
        assert got.score == pytest.approx(want.score, abs=1e-5)
    for got, want in zip(got_all, want_all):
        _same(got, want)


def test_workers_one_core_each_leave_the_callers_threads_alone():
    import torch

    before = torch.get_num_threads()
    workers = ModelWorkers(2)
    try:
        assert workers.threads() == [1, 1]
        assert torch.get_num_threads() == before
        names = workers.map(lambda part: [threading.current_thread().name] * len(part), list(range(5)))
        assert len(names) == 5 and all(n.startswith("featurelens-local-model") for n in names)
        assert names[0] == names[1] == names[2] and names[3] == names[4]  # contiguous shards
    finally:
        workers.close()


def test_a_failing_shard_fails_only_its_own_requests():
    workers = ModelWorkers(2)

    def answer(part):
        if 0 in part:
            raise RuntimeError("shard broke")
        return [x * 10 for x in part]

    try:
        out = workers.map(answer, [0, 1, 2, 3])
    finally:
        workers.close()
    assert [type(x) for x in out[:2]] == [RuntimeError, RuntimeError] and out[2:] == [20, 30]


def test_shards_are_contiguous_balanced_and_keep_every_item():
    assert shards(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert shards([1], 4) == [[1]]
    assert shards([], 2) == []
    assert shards(list(range(4)), 1) == [[0, 1, 2, 3]]


def test_workers_default_to_one_per_core_on_the_cpu_and_one_elsewhere(tiny_model_dir):
    assert default_workers("cuda") == 1
    assert default_workers(None) >= 1
    assert build_provider(f"local:{tiny_model_dir}").workers == default_workers(None)
    assert build_provider(f"local:{tiny_model_dir}", workers="1").workers == 1


def test_batches_are_split_on_the_cpu_or_when_workers_are_chosen():
    assert split_batches(2, chosen=False, device_type="cpu")
    assert not split_batches(2, chosen=False, device_type="cuda")  # a GPU found without device=
    assert split_batches(2, chosen=True, device_type="cuda")
    assert not split_batches(1, chosen=True, device_type="cpu")


def test_workers_must_be_a_positive_whole_number(tiny_model_dir):
    with pytest.raises(FeaturelensError, match="workers"):
        build_provider(f"local:{tiny_model_dir}", workers=0)
