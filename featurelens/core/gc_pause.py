"""Pausing CPython's cyclic garbage collector around bulk per-feature work.

Reading a chunk of records and labeling it offline allocates millions of small objects
that are freed by reference counting (lists of tokens and floats, examples, tallies):
none of them form cycles. The cyclic collector still counts every allocation and, every
few hundred, walks the young objects, and now and then every object the process holds
(the corpus's token strings included), which cost as much CPU as the labels themselves
(measured by benchmarks/million_stages.py). Pausing it for the span of one chunk keeps
that work off the per-feature path; it is back on when the chunk is done, so a cycle
made inside a chunk is collected at the collector's next pass.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from itertools import islice
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic collector off inside the block (left as it was when already off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def paused_batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last may be shorter), each drawn from ``items`` with the
    collector paused: a lazy source (a stream of jobs built from records) does its bulk
    work while it is drawn, and the collector is on again while the batch is used."""
    iterator = iter(items)
    while True:
        with gc_paused():
            batch = list(islice(iterator, size))
        if not batch:
            return
        yield batch
