"""The ``token-check`` scorer: do the label's tokens pick out activating windows? No LLM.

Detection and fuzzing without a model: the same held-out test set the LLM
classifiers use (activating windows across quantiles, plus random windows where the
feature never fired, see :mod:`.scoring_windows`), and a literal reader of the label in
place of the LLM. A window is predicted activating when it contains a token the label
names (after the named previous token, when the label gives one; tokens compared by
:func:`~featurelens.llm.token_labels.token_key`). The score is the
balanced accuracy of those predictions (0.5 is chance), as for detection; ``metrics``
add precision, recall and F1, and, fuzzing-style, how many of the tokens that fire
(>= 0.3 x their window's peak) the label names (``token_recall``) and how many named
tokens in activating windows fire (``token_precision``).

Labels that quote tokens (``" self" after "("``: token-lookup's, or an LLM's that quotes)
are read exactly; other labels by their content words, a rough reading that lets this
scorer compare any explainer with token-lookup. A label with nothing to look for gets
``status='undefined'`` (score NULL), never a 0.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain, compress, repeat
from operator import ge, gt, or_
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ScoreResult,
    ScorerBase,
)
from featurelens.llm.token_labels import label_keywords, parse_elements, window_keys
from featurelens.llm.window_text import HIGHLIGHT_FRACTION
from featurelens.scorers.metrics import classification
from featurelens.scorers.scoring_windows import scorer_fallbacks, scorer_kinds, test_windows


class LabelMatcher:
    """Which positions of a window a label names."""

    def __init__(self, label: str):
        elements = parse_elements(label)
        self.quoted = bool(elements)
        self.singles = frozenset(e.keys[0] for e in elements if e.previous is None)
        self.pairs = frozenset(e.keys for e in elements if e.previous is not None)
        self.pair_tokens = frozenset(key for key, _ in self.pairs)
        if not elements:
            self.singles = frozenset(label_keywords(label))

    def __bool__(self) -> bool:
        return bool(self.singles or self.pairs)

    def positions(self, tokens: list[str]) -> list[bool]:
        hit = set(self.hits(tokens))
        return [i in hit for i in range(len(tokens))]

    def hits(self, tokens: list[str]) -> list[int]:
        """The indices of the named positions, in order."""
        keys = window_keys(tokens)
        named = map(self.singles.__contains__, keys)  # one membership test a token, at C speed
        if self.pairs:  # or (key, previous key) named: the first position has no previous
            named = map(or_, named, chain((False,), map(self.pairs.__contains__, zip(keys[1:], keys))))
        return list(compress(range(len(keys)), named))

    def any_hit(self, tokens: list[str]) -> bool:
        """Whether the label names any position (set tests at C speed; pairs are looked for
        only in a window that holds one of their tokens)."""
        keys = window_keys(tokens)
        if not self.singles.isdisjoint(keys):
            return True
        if self.pair_tokens.isdisjoint(keys):
            return False
        return any(map(self.pairs.__contains__, zip(keys[1:], keys)))


def matcher_of(label: str) -> LabelMatcher:
    """The label's matcher, parsed once per distinct label, or once per distinct quoted part
    of labels that end in evidence (``" self" after "(" — 83% of top activation mass``):
    a dictionary's token-lookup labels name the same common tokens again and again with
    other percentages. Evidence that quotes nothing cannot change which tokens are read
    (a quoted token needs its closing quote), so the part before it is read alone."""
    head, dash, evidence = label.rpartition(" — ")
    if dash and '"' not in evidence:
        matcher = _matcher(head)
        if matcher.quoted:
            return matcher
    return _matcher(label)


@lru_cache(maxsize=4096)
def _matcher(label: str) -> LabelMatcher:
    return LabelMatcher(label)  # a matcher is never changed, so one serves every caller


class TokenCheckScorer(ScorerBase):
    """Balanced accuracy of "the window holds a named token" on held-out windows."""

    name = "token-check"
    needs_llm = False

    def __init__(self, n_activating: int = 50, n_random: int = 50, window: int = 32):
        if int(n_activating) < 1 or int(n_random) < 1 or int(window) < 2:
            raise FeaturelensError("The token-check scorer needs n_activating >= 1, n_random >= 1 and "
                                   "window >= 2; fix the scorer options.")
        self.n_activating, self.n_random, self.window = int(n_activating), int(n_random), int(window)

    def options(self) -> dict[str, Any]:
        return {"n_activating": self.n_activating, "n_random": self.n_random, "window": self.window}

    def example_kinds(self) -> dict[str, int | None]:
        return scorer_kinds(self.n_activating, self.n_random)

    def example_fallbacks(self) -> dict[str, dict[str, int | None]]:
        """Top windows, read only for a feature without quantile windows."""
        return scorer_fallbacks(self.n_activating)

    def example_width(self) -> int:
        """It looks at ``window`` tokens around each window's peak: the rest is never read."""
        return self.window

    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str] = frozenset()) -> list[LLMRequest]:
        return []

    def score(self, record: FeatureRecord, explanation: str, responses: list[LLMResponse | None],
              capabilities: frozenset[str] | None = None) -> ScoreResult:
        matcher = matcher_of(explanation)
        windows, held_out = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        if not matcher:
            return ScoreResult(None, "undefined", {"n_windows": len(windows), "held_out": held_out,
                                                   "reason": "the label names no token or content word"})
        labels, predictions = [], []
        named_firing = firing = named = named_and_firing = 0
        for w in windows:
            labels.append(int(w.activating))
            if not w.activating:
                predictions.append(int(matcher.any_hit(w.example.tokens)))
                continue
            hits = matcher.hits(w.example.tokens)
            predictions.append(int(bool(hits)))
            activations = w.example.activations
            threshold = HIGHLIGHT_FRACTION * w.peak
            named += len(hits)
            on = [activations[i] for i in hits if i < len(activations)]
            if threshold > 0:  # then a token at or over it fires (is > 0): counted at C speed
                firing += sum(map(ge, activations, repeat(threshold)))
                named_firing += sum(map(ge, on, repeat(threshold)))
            named_and_firing += sum(map(gt, on, repeat(0)))
        metrics: dict[str, Any] = classification(labels, predictions)
        metrics.update(n_windows=len(windows), held_out=held_out, quoted=matcher.quoted,
                       token_recall=named_firing / firing if firing else None,
                       token_precision=named_and_firing / named if named else None)
        value = metrics["balanced_accuracy"]
        return ScoreResult(value, "ok" if value is not None else "undefined", metrics,
                           {"labels": labels, "predictions": predictions})
