"""Number options that must be finite: click's FloatRange lets ``nan`` through (every
comparison with it is false), and a rate limit of ``nan`` or ``inf`` per minute would
reach the limiter and the estimate's arithmetic as nonsense."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteRange(click.FloatRange):
    """A FloatRange that also refuses ``nan`` and ``inf`` (``steer --temperature``)."""

    hint = "."  #: what the refusal says after "is not a finite number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number{self.hint}", param, ctx)
        return number


class PositiveRate(FiniteRange):
    """A finite number above 0 (``--rpm``, ``--tpm``)."""

    hint = "; give a limit such as 500, or leave the option out for no limit."

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)


#: Seeds torch.manual_seed takes (a 64-bit integer, signed or not).
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
SEED = click.IntRange(SEED_MIN, SEED_MAX)
