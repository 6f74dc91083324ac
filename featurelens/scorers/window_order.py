"""The order test windows are sent in, which decides what an early adaptive stop has seen.

An adaptive scorer stops after a prefix of its windows (:mod:`featurelens.scorers.adaptive`),
so the prefix should look like the whole test set. A plain shuffle gets that only on
average: a first round of 10 drawn from 50 activating and 50 random windows holds
anywhere from 2 to 8 activating ones, and a correlation computed on 8 silent windows
says little. ``order="stratified"`` deals the windows out instead:

- activating windows cycle through the activation quantile bins (shuffled within each
  bin), so the first few already span weak to strong activations;
- activating and random windows are interleaved in their overall proportion, so every
  prefix of ``k`` windows holds ``round(k * share)`` activating ones.

The result is still a fixed, seeded permutation of the same windows: the full score
(every window) is unchanged, and a rerun sends the same rounds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from featurelens.scorers.option_choices import one_of

T = TypeVar("T")

#: ``order`` values: a seeded shuffle of all windows, or the stratified deal above.
ORDERS = ("shuffled", "stratified")


def check_order(order: str) -> str:
    """``order`` normalised, or one sentence naming the choices."""
    return one_of("order", order, ORDERS, example="stratified")


def by_quantile(windows: Sequence[T], quantiles: Sequence[int | None], rng: random.Random) -> list[T]:
    """``windows`` dealt round-robin across their quantile bins, each bin shuffled first."""
    bins: dict[int, list[T]] = {}
    for window, quantile in zip(windows, quantiles, strict=True):
        bins.setdefault(quantile if quantile is not None else 0, []).append(window)
    groups = [bins[key] for key in sorted(bins)]
    for group in groups:
        rng.shuffle(group)
    rng.shuffle(groups)
    out: list[T] = []
    depth = 0
    while len(out) < len(windows):
        for group in groups:
            if depth < len(group):
                out.append(group[depth])
        depth += 1
    return out


def interleave(first: Sequence[T], second: Sequence[T]) -> list[T]:
    """Both lists merged so every prefix holds them in their overall proportion."""
    total = len(first) + len(second)
    out: list[T] = []
    i = j = 0
    for k in range(1, total + 1):
        if j >= len(second) or (i < len(first) and i < int(k * len(first) / total + 0.5)):
            out.append(first[i])
            i += 1
        else:
            out.append(second[j])
            j += 1
    return out
