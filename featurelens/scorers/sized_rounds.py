"""Later adaptive rounds sized from the interval instead of always ``round_windows``.

A bootstrap interval narrows about as ``1 / sqrt(n)`` in the number of windows, so
after a round of ``n`` windows whose interval is ``width`` wide, about
``n * (width / ci_width)^2`` windows would bring it under ``ci_width``. A feature
that misses the width by a little needs a few more windows, not another full round;
``round_size="sized"`` sends ``n * ((width / ci_width)^2 * margin - 1)`` more
(rounded up), clamped to ``[min_round, round_windows]``, where ``margin`` (1.2)
covers the estimate's own noise. The first round is unchanged. A round that turns
out too small costs another round, and every round repeats the shared prefix and
the explanation, so whether this saves tokens is measured
(``benchmarks/cost_robust.py``), not assumed.

``round_size="sized"`` is the simulation default (``benchmarks/cost_robust.py``: 3 %
fewer simulation tokens over 18 draws, its fidelity rule passed); ``round_size="fixed"``
makes every round add ``round_windows``, which the cost benchmarks compare against.

The plan is a pure function of the answers so far (the window order is fixed per
feature), so scoring the same answers again finds the same rounds, and a rerun sends
byte-identical requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from featurelens.core.errors import FeaturelensError
from featurelens.scorers.option_choices import one_of

T = TypeVar("T")

#: ``round_size`` option values.
ROUND_SIZES = ("fixed", "sized")
#: Headroom on the projected number of windows (the interval's own estimate is noisy).
MARGIN = 1.2


def check_round_size(value: str, min_round: int, round_windows: int) -> str:
    """``value`` normalised, or one sentence naming the choices; checks ``min_round`` too."""
    name = one_of("round_size", value, ROUND_SIZES)
    if not 1 <= int(min_round) <= int(round_windows):
        raise FeaturelensError(f"Scorer option min_round={min_round} must be between 1 and "
                               f"round_windows ({round_windows}); fix -o min_round.")
    return name


def next_size(n_scored: int, interval: Sequence[float] | None, ci_width: float, minimum: int,
              maximum: int, margin: float = MARGIN) -> int:
    """Windows to add after a round: enough to bring ``interval`` under ``ci_width`` with
    ``margin``, clamped to ``[minimum, maximum]``; ``maximum`` when nothing is known yet."""
    if interval is None or n_scored < 1:
        return maximum
    width = max(0.0, float(interval[1]) - float(interval[0]))
    extra = math.ceil(n_scored * ((width / ci_width) ** 2 * margin - 1))
    return max(minimum, min(maximum, extra))


def plan(windows: Sequence[T], first: int, full: int, answered: int,
         batch: Callable[[Sequence[T]], list[list[T]]],
         state: Callable[[list[list[T]]], tuple[Sequence[float] | None, int]],
         stop: Callable[[Sequence[float] | None], bool],
         size_after: Callable[[int, Sequence[float] | None], int]) -> tuple[list[list[T]], int]:
    """Request groups for every window, rounds sized as the answers so far dictate.

    ``answered`` requests have answers; ``batch`` splits a round into requests;
    ``state(groups)`` is the interval and windows scored over the answered ``groups``;
    ``stop`` says the interval is narrow enough. Returns the groups (the answered rounds,
    then the next round, then the rest of the windows in full rounds of ``full``: what a
    dry run prices, as for fixed rounds; sized rounds can be smaller and so more, each at
    least ``min_round`` windows) and how many of them the next round has (0 when the
    score is settled or the windows are used up)."""
    def rest(start: int) -> list[list[T]]:
        return [g for i in range(start, len(windows), full) for g in batch(windows[i:i + full])]

    groups: list[list[T]] = []
    position, size = 0, first
    while position < len(windows):
        round_groups = batch(windows[position:position + size])
        groups.extend(round_groups)
        position += size
        if len(groups) > answered:  # this round is not answered yet: it is the next one
            following = len(round_groups) if len(groups) - len(round_groups) == answered else 0
            return groups + rest(position), following
        interval, n_scored = state(groups)
        if stop(interval):
            return groups + rest(position), 0
        size = size_after(n_scored, interval)
    return groups, 0
