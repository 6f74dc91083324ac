"""The windows a scorer tests an explanation on, chosen and ordered deterministically.

A scorer builds its requests and later reads the answers from the same record, maybe
in another process after a crash; both sides must see the same windows in the same
order, and a rerun must send byte-identical prompts so the response cache hits. The
order is therefore shuffled with a seed made from the feature's identity only.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from featurelens.core.host.protocols import Example, FeatureRecord
from featurelens.llm.example_selection import EXPLAIN_TOP, for_scorer
from featurelens.llm.window_text import crop
from featurelens.scorers.window_order import by_quantile, interleave


@dataclass
class Window:
    """One test window, whether the feature fires in it, and its peak activation."""

    example: Example
    activating: bool
    peak: float = 0.0  #: ``example.max_activation``: cropping keeps the peak, so also the uncropped window's


def _window(example: Example, width: int, activating: bool | None) -> Window:
    """``example`` cropped to ``width``; ``activating=None``: whether the feature fires in it."""
    top = example.max_activation
    return Window(crop(example, width, top), top > 0 if activating is None else activating, top)


def feature_rng(record: FeatureRecord, salt: str) -> random.Random:
    """A random generator seeded by the feature and ``salt`` (the scorer's name)."""
    digest = hashlib.sha256(f"{record.dictionary_id}\0{record.feature}\0{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def test_windows(record: FeatureRecord, n_activating: int, n_random: int, width: int,
                 salt: str, random_width: int | None = None,
                 order: str = "shuffled") -> tuple[list[Window], bool]:
    """Shuffled, cropped test windows, and whether they were held out from the explainer.

    ``random_width`` crops the random windows (mostly silent) to fewer tokens than ``width``;
    ``order="stratified"`` deals them out so every prefix looks like the whole set
    (:mod:`featurelens.scorers.window_order`).
    """
    test = for_scorer(record, n_activating, n_random)
    activating = [w for w in (_window(e, width, True) for e in test.activating) if w.example.tokens]
    randoms = [w for w in (_window(e, random_width or width, None) for e in test.random) if w.example.tokens]
    rng = feature_rng(record, salt)
    if order == "stratified":
        activating = by_quantile(activating, [w.example.quantile for w in activating], rng)
        rng.shuffle(randoms)
        return interleave(activating, randoms), test.held_out
    windows = activating + randoms
    rng.shuffle(windows)
    return windows, test.held_out


def scorer_kinds(n_activating: int, n_random: int) -> dict[str, int | None]:
    """The stored windows :func:`test_windows` reads for every feature: all quantile
    windows and the first ``n_random`` random ones."""
    return {"quantile": None, "random": n_random}


def scorer_fallbacks(n_activating: int) -> dict[str, dict[str, int | None]]:
    """The windows :func:`test_windows` reads only for a feature without quantile windows:
    the top ones (those explainers did not see, or all of them)."""
    return {"quantile": {"top": EXPLAIN_TOP + n_activating}}
