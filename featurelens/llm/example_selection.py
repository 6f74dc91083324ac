"""Which of a feature's stored examples an explainer sees and which a scorer tests on.

Scoring an explanation on the very windows it was written from flatters it, so the
two sets are kept apart here, in one place: explainers read the ``top`` windows (the
clearest evidence of what the feature does); scorers test on the ``quantile`` windows
(activating windows across the whole range of strengths, as delphi does) plus the
``random`` ones. A store without quantile windows falls back to the top windows that
the explainers did not see (ranks from :data:`EXPLAIN_TOP` on) and, failing that, to
all top windows; the score's details say ``held_out: false`` in that last case.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.core.host.protocols import Example, FeatureRecord

#: How many top windows an explainer reads by default (and so never scored on).
EXPLAIN_TOP = 10


def for_explainer(record: FeatureRecord, n_examples: int = EXPLAIN_TOP,
                  n_quantile: int = 0) -> list[Example]:
    """The ``n_examples`` strongest windows, then ``n_quantile`` spread across quantiles.

    A store without top windows lends the strongest quantile windows instead; windows
    that never fire are never shown as evidence.
    """
    windows = record.of_kind("top") or record.of_kind("quantile")
    peaks = [e.max_activation for e in windows]  # each window's peak, computed once
    order = sorted(range(len(windows)), key=lambda i: -peaks[i])
    top = [windows[i] for i in order if peaks[i] > 0][:n_examples]
    quantile = _spread(record.of_kind("quantile"), n_quantile)
    return top + quantile


@dataclass
class TestSet:
    """The windows a scorer uses: activating ones, non-activating ones, and whether held out."""

    activating: list[Example]
    random: list[Example]
    held_out: bool


def for_scorer(record: FeatureRecord, n_activating: int, n_random: int) -> TestSet:
    """Up to ``n_activating`` activating and ``n_random`` random windows (module doc)."""
    quantile = record.of_kind("quantile")
    held_out = True
    if quantile:
        activating = _spread(quantile, n_activating)
    else:
        top = sorted(record.of_kind("top"), key=lambda e: -e.max_activation)
        unseen = top[EXPLAIN_TOP:]
        if not unseen:
            unseen, held_out = top, False
        activating = unseen[:n_activating]
    return TestSet(activating, record.of_kind("random")[:n_random], held_out)


def _spread(examples: list[Example], n: int) -> list[Example]:
    """``n`` examples taken round-robin across quantile bins, so every strength is seen."""
    if n <= 0 or not examples:
        return []
    bins: dict[int, list[Example]] = {}
    for example in examples:
        bins.setdefault(example.quantile if example.quantile is not None else 0, []).append(example)
    order = [bins[key] for key in sorted(bins)]
    chosen: list[Example] = []
    depth = 0
    while len(chosen) < n and any(depth < len(b) for b in order):
        for group in order:
            if depth < len(group) and len(chosen) < n:
                chosen.append(group[depth])
        depth += 1
    return chosen
