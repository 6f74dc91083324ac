"""Adaptive scoring: send test windows in rounds and stop once the score is pinned down.

Most of a scorer's bill is test windows. A feature whose explanation clearly works (or
clearly fails) shows it after a few dozen windows; more windows only narrow an
interval that is already narrow. A scorer with ``adaptive=true`` therefore sends its
requests a round at a time (``round_windows`` windows), recomputes the score's
confidence interval after each round (:mod:`featurelens.scorers.intervals`) and stops
when the interval is narrower than ``ci_width`` or every window (the hard maximum,
``n_activating + n_random``) has been used.

Windows are shuffled once per feature (:mod:`featurelens.scorers.scoring_windows`), so
every prefix of rounds is an unbiased sample of the full test set, and a rerun sends
byte-identical rounds (the cache answers them). The engine asks for each next round
through a job's ``follow_up``; through a batch API each ``batches collect`` submits the
next round (:mod:`featurelens.scorers.batch_rounds`), so both savings add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest


@dataclass(frozen=True)
class Rounds:
    """When to stop adding windows."""

    enabled: bool = False
    ci_width: float = 0.2  #: stop once the interval is narrower than this
    round_windows: int = 20  #: windows added per round
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.ci_width <= 2 or self.round_windows < 1 or not 0.5 <= self.confidence < 1:
            raise FeaturelensError(
                "Adaptive scoring needs 0 < ci_width <= 2, round_windows >= 1 and "
                "0.5 <= confidence < 1; fix the scorer options.")

    def options(self) -> dict[str, Any]:
        """What changes which windows are scored; part of the score's identity."""
        if not self.enabled:
            return {"adaptive": False}
        return {"adaptive": True, "ci_width": self.ci_width, "round_windows": self.round_windows,
                "confidence": self.confidence}

    def per_round(self, windows_per_request: int) -> int:
        """Requests in one round (at least one)."""
        return max(1, math.ceil(self.round_windows / max(1, windows_per_request)))

    def first(self, requests: list[LLMRequest], windows_per_request: int) -> list[LLMRequest]:
        """The first round's requests (all of them when not adaptive)."""
        return requests[:self.per_round(windows_per_request)] if self.enabled else requests

    def narrow(self, interval: Sequence[float] | None) -> bool:
        """True when ``interval`` is known and narrower than ``ci_width``."""
        return interval is not None and interval[1] - interval[0] < self.ci_width

    def next(self, requests: list[LLMRequest], answered: int, windows_per_request: int,
             interval: Sequence[float] | None) -> list[LLMRequest]:
        """The next round, or ``[]`` once the interval is narrow or the windows are used up."""
        if not self.enabled or answered >= len(requests) or self.narrow(interval):
            return []
        return requests[answered:answered + self.per_round(windows_per_request)]


def rounds_from_options(adaptive: bool | str, ci_width: float, round_windows: int,
                        confidence: float) -> Rounds:
    """:class:`Rounds` from scorer options (``-o adaptive=false`` arrives as a bool or text)."""
    if isinstance(adaptive, str):
        lowered = adaptive.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise FeaturelensError(f"Scorer option adaptive={adaptive!r} is not true or false; "
                                   "pass -o adaptive=true or -o adaptive=false.")
        adaptive = lowered in ("true", "1", "yes")
    try:
        return Rounds(bool(adaptive), float(ci_width), int(round_windows), float(confidence))
    except (TypeError, ValueError):
        raise FeaturelensError("Scorer options ci_width, round_windows and confidence must be "
                               "numbers; fix the -o values.") from None
