"""Scorer options that take one of a few names: one check, one sentence when it fails."""

from __future__ import annotations

from collections.abc import Sequence

from featurelens.core.errors import FeaturelensError


def one_of(option: str, value: object, choices: Sequence[str], example: str | None = None) -> str:
    """``value`` lower-cased and stripped if it names one of ``choices``; otherwise one
    sentence naming the choices and showing how to pass ``example`` (the first choice)."""
    name = str(value).strip().lower()
    if name not in choices:
        raise FeaturelensError(f"Scorer option {option}={value!r} is unknown; use "
                               f"{' or '.join(choices)} (-o {option}={example or choices[0]}).")
    return name
