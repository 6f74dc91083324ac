"""A worker's carried state: partials every M shards, merged with redone shards, equal one pass.

No Ray: these are the bytes a worker sends (featurelens.scale.carried) and the driver's
merge, on random codes full of ties.
"""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load

from featurelens.core.extraction.state import ExtractionState
from featurelens.scale.carried import CarriedState
from featurelens.scale.partial import from_bytes, merge_bytes, to_bytes

from .test_merge import (
    CONTEXT,
    CPU,
    N_FEATURES,
    SETTINGS,
    _assert_same,
    _batches,
    _reduce,
)


def _carry(workers: int, ship_every: int, shards: list, lost: set[int] = frozenset()) -> ExtractionState:
    """Deal ``shards`` round robin to ``workers`` carried states, each shipping every
    ``ship_every`` of its shards and at the end; shards in ``lost`` vanish with a worker's
    unshipped state and are reduced alone afterwards, merged last (out of order)."""
    merged = ExtractionState(N_FEATURES, CONTEXT, SETTINGS, CPU)
    carried = [CarriedState(N_FEATURES, CONTEXT, SETTINGS, CPU) for _ in range(workers)]
    held: list[list[int]] = [[] for _ in range(workers)]
    redo: list[int] = []
    for index, shard in enumerate(shards):
        worker = index % workers
        if index in lost:  # the worker dies: everything it carried since its last partial is gone
            redo.extend(held[worker] + [index])
            carried[worker], held[worker] = CarriedState(N_FEATURES, CONTEXT, SETTINGS, CPU), []
            continue
        for codes, seq, excluded in shard:
            carried[worker].state.accumulate(codes, seq.numel(), CONTEXT, seq, excluded)
        held[worker].append(index)
        if len(held[worker]) == ship_every:
            merge_bytes(merged, carried[worker].ship())
            held[worker] = []
    for worker in range(workers):
        merge_bytes(merged, carried[worker].ship())
    for index in redo:
        merge_bytes(merged, to_bytes(_reduce(shards[index])))
    return merged


@pytest.mark.parametrize("duplicates", [False, True])
@pytest.mark.parametrize("workers,ship_every", [(1, 1), (1, 3), (2, 2), (3, 100)])
def test_carried_partials_equal_one_pass(duplicates: bool, workers: int, ship_every: int) -> None:
    batches = _batches(45, duplicates)
    expected = _reduce(batches)
    shards = [batches[i:i + 1] for i in range(len(batches))]
    _assert_same(_carry(workers, ship_every, shards), expected)


@pytest.mark.parametrize("duplicates", [False, True])
def test_shards_lost_with_a_worker_and_redone_alone_equal_one_pass(duplicates: bool) -> None:
    batches = _batches(45, duplicates)
    expected = _reduce(batches)
    shards = [batches[i:i + 1] for i in range(len(batches))]
    rng = random.Random(1)
    for _ in range(3):
        lost = set(rng.sample(range(len(shards)), 4))
        _assert_same(_carry(2, 4, shards, lost), expected)


def test_a_second_partial_carries_only_new_windows_and_fresh_statistics() -> None:
    batches = _batches(30, False)
    carried = CarriedState(N_FEATURES, CONTEXT, SETTINGS, CPU)
    for codes, seq, excluded in batches[:5]:
        carried.state.accumulate(codes, seq.numel(), CONTEXT, seq, excluded)
    first = load(carried.ship())
    again = load(carried.ship())  # nothing happened in between
    assert first["top.feature"].numel() > 0 and again["top.feature"].numel() == 0
    assert int(again["n_tokens"][0]) == 0 and again["stats.feature"].numel() == 0
    assert again["pool.seq"].numel() == 0
    for codes, seq, excluded in batches[5:]:
        carried.state.accumulate(codes, seq.numel(), CONTEXT, seq, excluded)
    later = load(carried.ship())
    assert set(later["top.seq"].tolist()).isdisjoint(set(range(15)))  # windows of the first 5 batches


def test_partials_send_only_nonzero_activations_and_round_trip() -> None:
    batches = _batches(30, False)
    state = _reduce(batches)
    tensors = load(to_bytes(state))
    rows = tensors["top.feature"].numel()
    assert 0 < tensors["top.acts_value"].numel() < rows * CONTEXT / 2  # most of a window's tokens are 0
    _assert_same(from_bytes(to_bytes(state), N_FEATURES, CONTEXT, SETTINGS, CPU), state)
