"""What a feature edit is, and how users write one.

Three kinds, all spliced with the dictionary's error term kept
(``x' = x - x_hat + x_hat_edited``), so only the edited features change the residual:

- ``add``: add ``value`` times the feature's decoder direction (steering);
- ``clamp``: set the feature to ``value``, chosen so that re-encoding the edited
  activation reads exactly ``value`` (for dictionaries whose pre-activation is affine,
  that is every built-in one) — where it already reads ``value`` nothing changes;
- ``ablate``: clamp to 0, so positions where the feature is silent are left untouched.

On the command line: ``123=+8`` or ``123=-2`` adds (a sign means "add"), ``40=0`` or
``40=ablate`` ablates, ``7=3.5`` or ``7=clamp:3.5`` clamps, ``7=add:8`` adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from featurelens.core.errors import FeaturelensError

MODES = ("add", "clamp", "ablate")
POSITIONS = ("all", "prompt", "generated")


@dataclass(frozen=True)
class Edit:
    """One feature edit: ``mode`` (add, clamp, ablate) of ``feature`` with ``value``."""

    feature: int
    mode: str = "add"
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FeaturelensError(f"Unknown edit mode {self.mode!r}; use one of {', '.join(MODES)}.")
        if isinstance(self.feature, bool) or not isinstance(self.feature, int) or self.feature < 0:
            raise FeaturelensError(
                f"Feature index {self.feature!r} is not a non-negative integer; pass a feature number.")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) \
                or not math.isfinite(float(self.value)):
            raise FeaturelensError(
                f"The strength of the edit of feature {self.feature} is {self.value!r}, not a finite "
                "number; pass a number such as 8 or -2.5.")
        if self.mode == "ablate" and self.value != 0:
            object.__setattr__(self, "value", 0.0)

    @property
    def target(self) -> float:
        """The value a clamp (or ablation) makes the dictionary read."""
        return 0.0 if self.mode == "ablate" else float(self.value)

    def describe(self) -> str:
        if self.mode == "ablate":
            return f"{self.feature}=ablate"
        if self.mode == "clamp":
            return f"{self.feature}=clamp:{self.value:g}"
        return f"{self.feature}={self.value:+g}"

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "mode": self.mode, "value": float(self.value)}


def finite_number(text: str) -> float | None:
    """``text`` as a finite float, or None (not a number, NaN or infinite): both edit
    parsers refuse those, each in its own words."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _number(text: str, feature: str) -> float:
    value = finite_number(text)
    if value is None:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise FeaturelensError(
            f"The strength {shown!r} of feature {feature} is not a number; write e.g. {feature}=+8, "
            f"{feature}=0 (ablate) or {feature}=clamp:3.")
    return value


def parse_edit(spec: str) -> Edit:
    """``FEATURE=VALUE`` as typed on the command line (module docstring) -> :class:`Edit`."""
    feature, sep, value = str(spec).partition("=")
    feature, value = feature.strip(), value.strip()
    if len(str(spec)) > 80:  # echo a short head, not a 10,000-character argument
        spec = f"{str(spec)[:40]}..."
        feature = feature if len(feature) <= 18 else f"{feature[:18]}..."
    if not sep or not feature or not value:
        raise FeaturelensError(
            f"Cannot read the edit {spec!r}; write FEATURE=VALUE, e.g. 123=+8 (add), 40=0 (ablate) "
            "or 7=clamp:3.")
    if not (feature.isascii() and feature.isdigit()) or len(feature) > 18:
        raise FeaturelensError(f"In the edit {spec!r}, {feature!r} is not a feature number; "
                               "write e.g. 123=+8.")
    index = int(feature)
    mode, colon, rest = value.partition(":")
    if colon and mode in ("add", "clamp"):
        return Edit(index, mode, _number(rest.strip(), feature))
    if value == "ablate":
        return Edit(index, "ablate", 0.0)
    number = _number(value, feature)
    if value[0] in "+-":
        return Edit(index, "add", number)
    return Edit(index, "ablate", 0.0) if number == 0 else Edit(index, "clamp", number)


def normalize_edits(edits: Mapping[int, Any] | Iterable[Any] | None) -> list[Edit]:
    """Edits from the Python API's friendly forms.

    ``{123: 8.0}`` adds 8 times the decoder direction; ``{40: "ablate"}``;
    ``{7: ("clamp", 3.0)}``; ``{7: "clamp:3"}``; or a list of :class:`Edit` /
    ``"123=+8"`` strings. One feature may appear only once.
    """
    if edits is None:
        return []
    out: list[Edit] = []
    if isinstance(edits, Mapping):
        for feature, value in edits.items():
            if isinstance(value, Edit):
                out.append(value)
            elif isinstance(value, str):
                out.append(parse_edit(f"{feature}={value}") if value in ("ablate",) or ":" in value
                           else Edit(int(feature), "add", _number(value, str(feature))))
            elif isinstance(value, tuple) and len(value) == 2:
                out.append(Edit(int(feature), str(value[0]), float(value[1]) if value[0] != "ablate" else 0.0))
            else:
                out.append(Edit(int(feature) if not isinstance(feature, bool) else feature, "add", value))
    else:
        for item in edits:
            out.append(item if isinstance(item, Edit) else parse_edit(str(item)))
    seen: set[int] = set()
    for edit in out:
        if edit.feature in seen:
            raise FeaturelensError(f"Feature {edit.feature} is edited twice; give each feature one edit.")
        seen.add(edit.feature)
    return out


def check_positions(positions: str | Iterable[int]) -> str | tuple[int, ...]:
    """``all``, ``prompt``, ``generated``, or the token positions to edit (0-based, e.g. a
    graph node's position)."""
    if isinstance(positions, str):
        if positions not in POSITIONS:
            raise FeaturelensError(f"Unknown positions {positions!r}; use one of {', '.join(POSITIONS)}.")
        return positions
    chosen = tuple(positions)
    if not chosen or any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in chosen):
        raise FeaturelensError(f"Positions {chosen!r} are not token positions; pass 0-based whole numbers.")
    return chosen
