"""The cyclic collector is paused only inside the bulk work, and always back on after it."""

from __future__ import annotations

import gc

import pytest

from featurelens.core.gc_pause import gc_paused, paused_batches


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
