"""Number options that must be finite: click's FloatRange lets ``nan`` through (every
comparison with it is false), and a rate limit of ``nan`` or ``inf`` per minute would
reach the limiter and the estimate's arithmetic as nonsense."""

from __future__ import annotations

import math
from typing import Any

import click


class PositiveRate(click.FloatRange):
    """A finite number above 0 (``--rpm``, ``--tpm``)."""

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; give a limit such as 500, or leave the option out "
                      "for no limit.", param, ctx)
        return number


class FiniteRange(click.FloatRange):
    """A FloatRange that also refuses ``nan`` and ``inf`` (``steer --temperature``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: Seeds torch.manual_seed takes (a 64-bit integer, signed or not).
SEED = click.IntRange(-(2**63), 2**64 - 1)
