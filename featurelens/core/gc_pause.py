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
from collections import deque
from contextlib import contextmanager
from itertools import islice
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
U = TypeVar("U")


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


def paused_batches(items: Iterable[T], size: int,
                   settle: Callable[[list[T]], list[U]] | None = None) -> Iterator[list[U]]:
    """Lists of ``size`` items (the last may be shorter), each drawn from ``items`` with the
    collector paused: a lazy source (a stream of jobs built from records) does its bulk
    work while it is drawn.

    ``settle``, when given, runs on each drawn batch still under the pause and returns the
    part the caller needs afterwards (what is yielded, maybe empty); the rest is released
    before the collector is on again. Objects freed while it is off are never walked: the
    collector's count of young objects falls as they are freed, so work finished inside
    the pause (an offline label and its records) costs the collector nothing, where
    objects still alive at the first allocation after the pause (a whole chunk's records)
    are all walked, then walked again as they age."""
    iterator = iter(items)
    while True:
        with gc_paused():
            batch = list(islice(iterator, size))
            if not batch:
                return
            kept = settle(batch) if settle is not None else batch
            del batch
        yield kept  # type: ignore[misc]


def handed_out(page: deque[T]) -> Iterator[T]:
    """Each item of ``page``, let go of as it is handed out.

    A job source builds a page of jobs from one read of records, drops its own references
    to the records, and hands the jobs out through this: once a consumer has drawn the
    page's last job, nothing of the page is left in the source, so a chunk drawn and
    finished under :func:`paused_batches` frees its records before the collector is on."""
    while page:
        yield page.popleft()
