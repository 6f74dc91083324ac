"""Compact example text: one line per window, firing runs marked with their strength once.

``ran 5<< km>>(10) in an hour`` carries what a ``token<TAB>activation`` table does for an
explainer (the firing tokens, their 0-10 strength under the single normalisation rule of
:mod:`featurelens.llm.window_text`, the text before them) at about a quarter of the
tokens: silent tokens cost only their text. A run of adjacent firing tokens is marked
once with its largest value. Tokens are neutralised, so a corpus newline cannot start
a line of its own and ``<<`` ``>>`` only ever mark firing tokens.
"""

from __future__ import annotations

import math

from featurelens.core.host.protocols import Example
from featurelens.llm.window_text import HIGHLIGHT_FRACTION, neutralise


def marked_line(example: Example, scale: float) -> str:
    """``example`` as one line with each firing run wrapped in ``<< >>`` and its strength.

    A marked run shows at least 1: it fired (above 0.3 of its window's peak) even when
    that is under a tenth of the feature's maximum, and a 0 would say it did not.

    One pass over the window: a token is firing under the rule of
    :func:`featurelens.llm.window_text.activating_mask` and its strength is
    :func:`featurelens.llm.window_text.normalise_all`'s, computed only for firing tokens (this runs
    for ten windows of every one of millions of features).
    """
    activations = example.activations
    peak = max(activations, default=0.0)
    cut = HIGHLIGHT_FRACTION * peak if peak > 0 else math.inf  # nothing fires in a silent window
    scaled = bool(scale) and scale > 0
    parts: list[str] = []
    run_max = -1
    for token, a in zip(example.tokens, activations):
        if a > cut:
            if run_max < 0:
                parts.append("<<")
            value = min(10, int(math.floor(10.0 * a / scale))) if scaled and a < math.inf else 0
            if value > run_max:
                run_max = value
        elif run_max >= 0:
            parts.append(f">>({max(1, run_max)})")
            run_max = -1
        parts.append(neutralise(token))
    if run_max >= 0:
        parts.append(f">>({max(1, run_max)})")
    return "".join(parts)


def compact_block(examples: list[Example], scale: float) -> str:
    """The ``<examples>`` block: numbered lines, strongest window first."""
    lines = [f"{i}. {marked_line(e, scale)}" for i, e in enumerate(examples, 1)]
    return "<examples>\n" + "\n".join(lines) + "\n</examples>"
