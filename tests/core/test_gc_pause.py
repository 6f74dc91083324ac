"""The cyclic collector is paused only inside the bulk work, and always back on after it."""

from __future__ import annotations

import gc
import weakref
from collections import deque

import pytest

from featurelens.core.gc_pause import gc_paused, handed_out, paused_batches


def test_paused_inside_and_restored_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_already_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_batches_are_drawn_paused_and_used_with_the_collector_on() -> None:
    seen: list[bool] = []

    def source():
        for i in range(7):
            seen.append(gc.isenabled())
            yield i

    batches = []
    for batch in paused_batches(source(), 3):
        assert gc.isenabled()  # the caller's work on a batch runs with the collector on
        batches.append(batch)
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert seen == [False] * 7


def test_a_source_that_fails_while_drawn_leaves_the_collector_on() -> None:
    def source():
        yield 1
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        list(paused_batches(source(), 4))
    assert gc.isenabled()


def test_settle_runs_paused_and_its_part_is_what_is_yielded() -> None:
    settled: list[bool] = []

    def keep_odd(batch: list[int]) -> list[int]:
        settled.append(gc.isenabled())
        return [i for i in batch if i % 2]

    assert list(paused_batches(iter(range(6)), 2, keep_odd)) == [[1], [3], [5]]
    assert list(paused_batches(iter([0, 2]), 2, keep_odd)) == [[]]  # an empty part is still a batch
    assert settled == [False] * 4
    assert gc.isenabled()


class _Item:
    pass


def test_the_settled_batch_is_freed_before_the_collector_is_back() -> None:
    freed_paused: list[bool] = []

    def source():
        for _ in range(5):
            item = _Item()
            weakref.finalize(item, lambda: freed_paused.append(not gc.isenabled()))
            yield item

    for kept in paused_batches(source(), 2, lambda batch: []):
        assert kept == []
    assert freed_paused == [True] * 5


def test_handed_out_keeps_nothing_it_has_handed_out() -> None:
    items = [_Item() for _ in range(3)]
    refs = [weakref.ref(i) for i in items]
    source = handed_out(deque(items))
    del items
    first = next(source)
    assert refs[0]() is first
    del first
    assert refs[0]() is None  # the source let go of it
    assert [r() is not None for r in refs[1:]] == [True, True]
    assert len(list(source)) == 2
    assert all(r() is None for r in refs)
