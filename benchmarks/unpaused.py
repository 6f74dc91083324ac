"""The engine's draw of jobs with the cyclic collector left on: the other side of the A/Bs
that measure ``core/gc_pause.paused_batches`` (embedding_width.py, embedding_warm_ab.py)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from featurelens.core.batched import batched

T = TypeVar("T")
U = TypeVar("U")


def unpaused_batches(items: Iterable[T], size: int,
                     settle: Callable[[list[T]], list[U]] | None = None) -> Iterator[list]:
    """What ``paused_batches`` yields, drawn and settled with the collector on."""
    for batch in batched(items, size):
        yield settle(batch) if settle is not None else batch
