"""Partial extraction states: shard, serialise, merge in any order = one pass (no Ray needed)."""

from __future__ import annotations

import random

import pytest
import torch

from featurelens.core.extraction.merge import merge_states
from featurelens.core.extraction.state import ExtractionState, Settings
from featurelens.core.extraction.topk_examples import rank_key
from featurelens.scale.partial import from_bytes, merge_bytes, to_bytes

N_FEATURES, CONTEXT, BATCH = 24, 8, 3
SETTINGS = Settings(top_k=4, n_quantile=5, quantile_bins=3, n_random=4, random_pool=9, seed=3)
CPU = torch.device("cpu")


class _Codes:
    """The (values, indices) pair ``encode_sparse`` returns."""

    def __init__(self, values: torch.Tensor, indices: torch.Tensor):
        self.values, self.indices = values, indices


def _batches(n_windows: int, duplicates: bool) -> list[tuple[list, torch.Tensor, torch.Tensor]]:
    """Random sparse codes per batch; with ``duplicates`` every window repeats an earlier
    one exactly, so equal scores (ties) are everywhere."""
    generator = torch.Generator().manual_seed(7)
    rows = []
    for window in range(n_windows):
        if duplicates and window >= 4:
            rows.append(rows[window % 4])
            continue
        values = torch.rand(CONTEXT, 5, generator=generator) - 0.3
        indices = torch.stack([torch.randperm(N_FEATURES, generator=generator)[:5] for _ in range(CONTEXT)])
        rows.append((values, indices))
    batches = []
    for start in range(0, n_windows, BATCH):
        part = rows[start:start + BATCH]
        codes = [_Codes(torch.cat([v for v, _ in part]), torch.cat([i for _, i in part]))]
        seq = torch.arange(start, start + len(part))
        excluded = torch.zeros(len(part), CONTEXT, dtype=torch.bool)
        excluded[:, 0] = True  # BOS
        batches.append((codes, seq, excluded))
    return batches


def _reduce(batches: list) -> ExtractionState:
    state = ExtractionState(N_FEATURES, CONTEXT, SETTINGS, CPU)
    for codes, seq, excluded in batches:
        state.accumulate(codes, seq.numel(), CONTEXT, seq, excluded)
    return state


def _assert_same(actual: ExtractionState, expected: ExtractionState) -> None:
    for field in ("fire_count", "max", "min", "hist"):
        assert torch.equal(getattr(actual.stats, field), getattr(expected.stats, field)), field
    assert torch.allclose(actual.stats.total, expected.stats.total, rtol=1e-12, atol=0)
    assert actual.stats.n_tokens == expected.stats.n_tokens
    for name in ("top", "reservoir"):
        a_seq, a_acts, a_order = getattr(actual, name).ranked(0, N_FEATURES)
        e_seq, e_acts, e_order = getattr(expected, name).ranked(0, N_FEATURES)
        assert torch.equal(a_seq.gather(1, a_order), e_seq.gather(1, e_order)), name
        index = a_order[:, :, None].expand_as(a_acts)
        assert torch.equal(a_acts.gather(1, index), e_acts.gather(1, e_order[:, :, None].expand_as(e_acts)))
    assert torch.equal(actual.pool.seq, expected.pool.seq)
    assert [f.tolist() for f in actual.pool.firing] == [f.tolist() for f in expected.pool.firing]
    a_rand, _ = actual.pool.choose(0, N_FEATURES, SETTINGS.n_random)
    e_rand, _ = expected.pool.choose(0, N_FEATURES, SETTINGS.n_random)
    assert torch.equal(a_rand, e_rand)


@pytest.mark.parametrize("duplicates", [False, True])
def test_shards_merged_in_any_order_equal_one_pass(duplicates: bool) -> None:
    batches = _batches(40, duplicates)
    expected = _reduce(batches)
    assert int((expected.top.seq >= 0).sum()) > N_FEATURES  # features really fill their top windows
    rng = random.Random(0)
    for shard_size in (1, 2, 5):
        shards = [batches[i:i + shard_size] for i in range(0, len(batches), shard_size)]
        partials = [to_bytes(_reduce(shard)) for shard in shards]  # what a worker sends back
        states = [from_bytes(data, N_FEATURES, CONTEXT, SETTINGS, CPU) for data in partials]
        # a random merge tree: any pair of neighbours, in either direction
        while len(states) > 1:
            i = rng.randrange(len(states) - 1)
            left, right = states[i], states[i + 1]
            merged = merge_states(left, right) if rng.random() < 0.5 else merge_states(right, left)
            states[i:i + 2] = [merged]
        _assert_same(states[0], expected)


def test_merging_bytes_directly_equals_merging_states() -> None:
    batches = _batches(40, True)
    expected = _reduce(batches)
    merged = ExtractionState(N_FEATURES, CONTEXT, SETTINGS, CPU)
    for start in range(0, len(batches), 3):
        merge_bytes(merged, to_bytes(_reduce(batches[start:start + 3])))
    _assert_same(merged, expected)


def test_empty_partial_round_trips_and_merges_as_identity() -> None:
    batches = _batches(9, False)
    expected = _reduce(batches)
    empty = from_bytes(to_bytes(ExtractionState(N_FEATURES, CONTEXT, SETTINGS, CPU)), N_FEATURES,
                       CONTEXT, SETTINGS, CPU)
    _assert_same(merge_states(empty, _reduce(batches)), expected)


def test_states_of_other_settings_are_refused() -> None:
    other = Settings(top_k=2)
    with pytest.raises(ValueError, match="same extraction settings"):
        merge_states(ExtractionState(4, CONTEXT, SETTINGS, CPU), ExtractionState(4, CONTEXT, other, CPU))


def test_rank_key_orders_by_score_then_later_window_first() -> None:
    score = torch.tensor([[-float("inf"), -1.0, 0.0, 0.5, 0.5, 2.0, 1e-30]])
    seq = torch.tensor([[0, -1, 3, 9, 2, 1, 4]])
    order = rank_key(score, seq).argsort(dim=1)[0].tolist()
    # -inf, empty, 0, tiny, then the two 0.5s with the later window (9) lower, then 2.0
    assert order == [0, 1, 2, 6, 3, 4, 5]
