"""Config values and tensor sets read strictly, so a checkpoint either encodes exactly
as the library that wrote it or is refused in one sentence.

``bool("false")`` is True, ``int(float("inf"))`` raises, a list is not a dict key, and a
tensor the loader does not apply (a ``W_skip`` next to a config without a skip
connection) would silently change what every feature reads: each is checked here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError


def config_bool(config: Mapping[str, Any], key: str, default: bool, source: Path | str) -> bool:
    """``config[key]`` as a JSON boolean (``default`` when absent or null)."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FeaturelensError(f"{source} gives {key}={value!r}; it must be true or false.")
    return value


def config_str(value: Any, key: str, source: Path | str) -> str | None:
    """A name from a config (a hookpoint, a model id): a string, or None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise FeaturelensError(f"{source} gives {key}={value!r}; it must be a string.")
    return value


def config_name(value: Any, key: str, choices: Iterable[str], source: Path | str) -> str:
    """``value`` if it is one of ``choices`` (an architecture, an activation)."""
    known = list(choices)
    if not isinstance(value, str) or value not in known:
        raise FeaturelensError(
            f"{source} gives {key}={value!r}, which featurelens cannot load; supported: {', '.join(known)}.")
    return value


def positive_factor(value: Any, key: str, source: Path | str) -> float:
    """A finite number above 0 (sparsify's expansion_factor)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FeaturelensError(f"{source} gives {key}={value!r}; it must be a finite number above 0.")
    return float(value)


def refuse_unknown_tensors(tensors: Iterable[str], used: Iterable[str], source: Path | str, fmt: str) -> None:
    """One sentence if the file holds tensors the loader does not apply: ignoring them
    would encode differently from the library that wrote the checkpoint."""
    extra = sorted(set(tensors) - set(used))
    if extra:
        raise FeaturelensError(
            f"{source} holds {', '.join(map(repr, extra))} that its {fmt} config does not use, so "
            "featurelens cannot encode as the library that wrote it; check the config (e.g. a skip "
            "connection or architecture) or remove the extra tensors.")
