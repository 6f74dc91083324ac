"""batched(): an iterable cut into lists of a fixed size (``itertools.batched`` from Python 3.12 on;
featurelens supports 3.10)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
