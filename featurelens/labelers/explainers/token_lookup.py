"""The ``token-lookup`` explainer: a label from the tokens that carry the activation, no LLM.

The baseline of OpenAI's neuron-explainer work, made readable: over a feature's top
windows, add up the activation on each token (grouped by :func:`.token_label.token_key`)
and on each (previous token, token) pair, then name the fewest tokens that carry most
of that mass. A token that also appears often *without* the feature firing is named
with the token before it when that pair is what fires (``" self" after "("``).

The label says its evidence, and the explanation's options store it:

- ``coverage``: the share of the top windows' activation mass on the named tokens;
- ``precision``: of the named tokens' occurrences in those windows, the share where
  the feature fires (measured on the top windows only, so it flatters a little; the
  token-check scorer measures it on held-out and random windows).

Deterministic, no requests (the engine runs it without calling a provider), and fast
enough for every feature of a dictionary: thousands of features a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    ExplainerBase,
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ParseError,
)
from featurelens.llm.example_selection import EXPLAIN_TOP, for_explainer
from featurelens.llm.token_labels import Element, render_label, window_keys


class Label(str):
    """An explanation text that carries its evidence (stored in the explanation's options)."""

    evidence: dict[str, Any]

    def __new__(cls, text: str, evidence: dict[str, Any]) -> "Label":
        label = super().__new__(cls, text)
        label.evidence = evidence
        return label


@dataclass
class _Tally:
    """Activation mass, occurrences and firing occurrences of one token or pair."""

    mass: float = 0.0
    seen: int = 0
    fired: int = 0
    forms: dict[str, float] = field(default_factory=dict)  #: surface form -> its mass

    def fire(self, token: str, activation: float) -> None:
        self.fired += 1
        self.mass += activation
        self.forms[token] = self.forms.get(token, 0.0) + activation

    @property
    def precision(self) -> float:
        return self.fired / self.seen if self.seen else 0.0

    def form(self, fallback: str) -> str:
        """The surface form carrying most mass (ties: the first in sorted order)."""
        if not self.forms:
            return fallback
        return min(self.forms, key=lambda f: (-self.forms[f], f))


class TokenLookupExplainer(ExplainerBase):
    """Options: ``n_examples`` (top windows read), ``max_tokens`` (most tokens named),
    ``target_coverage`` (stop naming once this share of the mass is covered),
    ``min_share`` (a token must carry this share to be named)."""

    name = "token-lookup"
    needs_llm = False
    reads_logit_effects = False  # it reads the top windows' tokens only

    def __init__(self, n_examples: int = EXPLAIN_TOP, max_tokens: int = 3,
                 target_coverage: float = 0.8, min_share: float = 0.05):
        if int(n_examples) < 1 or int(max_tokens) < 1:
            raise FeaturelensError(f"token-lookup options n_examples={n_examples} / max_tokens={max_tokens} "
                                   "are too small; use n_examples >= 1 and max_tokens >= 1.")
        if not 0 < float(target_coverage) <= 1 or not 0 <= float(min_share) < 1:
            raise FeaturelensError(f"token-lookup options target_coverage={target_coverage} / "
                                   f"min_share={min_share} are out of range; use 0 < target_coverage <= 1 "
                                   "and 0 <= min_share < 1.")
        self.n_examples = int(n_examples)
        self.max_tokens = int(max_tokens)
        self.target_coverage = float(target_coverage)
        self.min_share = float(min_share)

    def options(self) -> dict[str, Any]:
        return {"n_examples": self.n_examples, "max_tokens": self.max_tokens,
                "target_coverage": self.target_coverage, "min_share": self.min_share}

    def example_kinds(self) -> dict[str, int | None]:
        """Only the top windows are read (the rest stay held out for scorers)."""
        return {"top": self.n_examples}

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        return []

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> Label:
        return self.explain(record)

    def explain(self, record: FeatureRecord) -> Label:
        """The label of ``record`` with its evidence; :class:`ParseError` if it never fired.

        Only firing positions are tallied (a sparse feature has few); how often a token or
        pair occurs at all is counted afterwards, and only for the few the label names.
        """
        windows = for_explainer(record, self.n_examples)
        singles: dict[str, _Tally] = {}
        pairs: dict[tuple[str, str], _Tally] = {}
        previous_forms: dict[tuple[str, str], dict[str, float]] = {}
        keyed: list[tuple[str, ...]] = []
        total = 0.0
        for window in windows:
            tokens = window.tokens
            keys = window_keys(tokens)
            keyed.append(keys)
            activations = window.activations
            for i in [i for i, a in enumerate(activations) if a > 0]:
                activation, token, key = activations[i], tokens[i], keys[i]
                single = singles.get(key) or singles.setdefault(key, _Tally())
                single.fire(token, activation)
                if i:
                    pair = (keys[i - 1], key)
                    tally = pairs.get(pair) or pairs.setdefault(pair, _Tally())
                    tally.fire(token, activation)
                    forms = previous_forms.get(pair) or previous_forms.setdefault(pair, {})
                    forms[tokens[i - 1]] = forms.get(tokens[i - 1], 0.0) + activation
                total += activation
        if total <= 0:
            raise ParseError(f"feature {record.feature} has no activating windows to look tokens up in")
        return self._label(singles, pairs, previous_forms, total, keyed)

    def _label(self, singles: dict[str, _Tally], pairs: dict[tuple[str, str], _Tally],
               previous_forms: dict[tuple[str, str], dict[str, float]], total: float,
               keyed: list[tuple[str, ...]]) -> Label:
        ranked = sorted(singles, key=lambda k: (-singles[k].mass, k))
        best_pair: dict[str, tuple[str, str]] = {}
        for pair, tally in pairs.items():
            current = best_pair.get(pair[1])
            if current is None or (tally.mass, pair) > (pairs[current].mass, current):
                best_pair[pair[1]] = pair
        elements: list[Element] = []
        chosen: list[dict[str, Any]] = []
        covered = fired = seen = 0.0
        for key in ranked:
            tally = singles[key]
            if elements and (covered / total >= self.target_coverage or len(elements) >= self.max_tokens
                             or tally.mass / total < self.min_share):
                break
            tally.seen = sum(keys.count(key) for keys in keyed)
            element, used = Element(tally.form(key)), tally
            pair = best_pair.get(key)
            if pair is not None:
                pairs[pair].seen = _pair_count(keyed, pair)
                if self._needs_context(tally, pairs[pair]):
                    forms = previous_forms[pair]
                    previous = min(forms, key=lambda f: (-forms[f], f))
                    element, used = Element(pairs[pair].form(key), previous), pairs[pair]
            elements.append(element)
            covered += used.mass
            fired += used.fired
            seen += used.seen
            chosen.append({"token": element.token, "previous": element.previous,
                           "share": round(used.mass / total, 4), "precision": round(used.precision, 4)})
        coverage = covered / total
        precision = fired / seen if seen else None
        evidence = {"coverage": round(coverage, 4),
                    "precision": round(precision, 4) if precision is not None else None,
                    "tokens": chosen}
        return Label(render_label(elements, coverage, precision), evidence)

    @staticmethod
    def _needs_context(single: _Tally, pair: _Tally) -> bool:
        """Name the previous token when the token alone is unreliable and the pair is not:
        the pair keeps most of the token's mass and fires clearly more often."""
        return (single.precision < 0.7 and pair.mass >= 0.6 * single.mass
                and pair.precision >= single.precision + 0.2)


def _pair_count(keyed: list[tuple[str, ...]], pair: tuple[str, str]) -> int:
    """How often ``pair`` occurs as (previous key, key) within the windows (never across
    two windows): a C-speed search for the second key, then a look at the one before."""
    first, second = pair
    count = 0
    for keys in keyed:
        at = 0
        try:
            while True:
                at = keys.index(second, at + 1)
                count += keys[at - 1] == first
        except ValueError:
            continue
    return count
