"""How corpus text and activations are shown to an LLM: the one normalisation rule,
delimiter neutralisation, token-activation tables and ``<<highlighted>>`` text.

Explainers and scorers both import from here, so a token is written the same way in
every prompt and the same activation always becomes the same integer.

**Normalisation rule (the only one in featurelens).** An activation ``x`` of a feature
whose largest stored activation is ``m`` is shown as ``min(10, floor(10 * max(x, 0) / m))``.
We follow OpenAI's ``floor`` rather than delphi's ``ceil`` because ``ceil`` turns every
faint positive activation into a 1, which fills prompts with noise the explanation is
not about and breaks the "most tokens are 0" premise the simulator relies on. We divide
by the feature's maximum over *all* its stored examples (``FeatureRecord.max_activation``),
not by the maximum of the examples in one prompt, so a token keeps the same integer in
every prompt of that feature and a weak example does not look like a strong one.

**Corpus text is data.** Prompts delimit examples with tags and highlight with ``<<``
``>>``; a token may contain any of these characters, newlines or tabs. :func:`neutralise`
rewrites a token so that none of them survive: ``<`` and ``>`` become ``‹`` and ``›``,
newline becomes ``↵`` and tab ``⇥``. Text inside an example therefore cannot close the
example, open an instruction, fake a highlight or start a line of its own.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

from featurelens.core.host.protocols import Example, FeatureRecord
from featurelens.core.window_cut import cut_start

#: Characters a corpus token may not carry into a prompt, and what is shown instead.
_NEUTRAL = str.maketrans({"<": "‹", ">": "›", "\n": "↵", "\r": "↵", "\t": "⇥", "\x00": ""})

#: Tokens at or above this fraction of a window's maximum are "activating" (delphi's 0.3).
HIGHLIGHT_FRACTION = 0.3


def normalise(activation: float, scale: float) -> int:
    """The activation as an integer 0-10 under featurelens's single rule (module doc)."""
    if not scale or scale <= 0 or not math.isfinite(activation) or activation <= 0:
        return 0
    return min(10, int(math.floor(10.0 * activation / scale)))


def feature_scale(record: FeatureRecord) -> float:
    """The divisor of :func:`normalise` for ``record``: its largest stored activation."""
    stored = max((e.max_activation for e in record.examples), default=0.0)
    return max(float(record.max_activation or 0.0), stored)


def normalise_all(activations: Sequence[float], scale: float) -> list[int]:
    """:func:`normalise` applied to every token of a window (inlined: a prompt has
    thousands of tokens, and this runs for every one of millions of features)."""
    if not scale or scale <= 0:
        return [0] * len(activations)
    return [min(10, int(math.floor(10.0 * a / scale))) if 0 < a < math.inf else 0
            for a in activations]


@lru_cache(maxsize=1 << 16)
def neutralise(token: str) -> str:
    """``token`` with every delimiter character replaced (module doc); never empty.

    Cached: tokens come from a fixed vocabulary, so the same few thousand strings are
    rewritten over and over."""
    shown = token.translate(_NEUTRAL)
    return shown if shown else "∅"


def token_table(tokens: Sequence[str], values: Sequence[int | str]) -> str:
    """``token<TAB>value`` lines, one per token (OpenAI's simulator format)."""
    return "\n".join(f"{neutralise(t)}\t{v}" for t, v in zip(tokens, values))


def highlight(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    """The window as one string with runs of marked tokens wrapped in ``<<`` ``>>``."""
    parts: list[str] = []
    inside = False
    for token, on in zip(tokens, marked):
        if on and not inside:
            parts.append("<<")
        elif not on and inside:
            parts.append(">>")
        inside = on
        parts.append(neutralise(token))
    if inside:
        parts.append(">>")
    return "".join(parts)


def activating_mask(example: Example, fraction: float = HIGHLIGHT_FRACTION) -> list[bool]:
    """Which tokens of ``example`` count as activating: above ``fraction`` of its maximum."""
    peak = example.max_activation
    if peak <= 0:
        return [False] * len(example.tokens)
    return [a > fraction * peak for a in example.activations]


def plain(tokens: Sequence[str]) -> str:
    """The window as one neutralised string, without highlights (``map``: no generator
    frame per token; the embedding scorer builds this for every test window of millions
    of features)."""
    return "".join(map(neutralise, tokens))


def crop(example: Example, width: int, top: float | None = None) -> Example:
    """A window of at most ``width`` tokens that keeps the peak, with a little context after.

    Explainers and classifiers show short windows (delphi: 32 tokens); the peak sits
    three quarters of the way in, because what precedes a token is what a causal
    model's feature can depend on. ``top``: the window's ``max_activation`` when the
    caller has it already (a scorer reads it for every window), so it is not found twice.
    """
    n = len(example.tokens)
    if width <= 0 or n <= width:
        return example
    activations = example.activations
    if not activations:
        peak = 0
    else:  # the first peak
        peak = activations.index(max(activations) if top is None else top)
    start = cut_start(peak, n, width)
    return Example(example.tokens[start:start + width], example.activations[start:start + width],
                   example.kind, example.quantile)
