"""token-lookup gives, on seeded mixed records, exactly the labels and evidence of its plain
reading: every token and pair of every window counted, every firing position tallied."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from seeded_records import seeded_records

from featurelens.core.host.protocols import FeatureRecord, ParseError
from featurelens.labelers.explainers.token_lookup import Label, TokenLookupExplainer, _Tally
from featurelens.llm.example_selection import for_explainer
from featurelens.llm.token_labels import token_key


def plain_label(explainer: TokenLookupExplainer, record: FeatureRecord) -> Label:
    """The module's rule read literally: count everything, then name tokens."""
    singles: dict[str, _Tally] = defaultdict(_Tally)
    pairs: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    previous_forms: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    seen: Counter = Counter()
    seen_pairs: Counter = Counter()
    total = 0.0
    window_keys = []
    for window in for_explainer(record, explainer.n_examples):
        keys = [token_key(t) for t in window.tokens]
        window_keys.append(keys)
        seen.update(keys)
        seen_pairs.update(zip(keys, keys[1:]))
        for i, activation in enumerate(window.activations):
            if not activation > 0:
                continue
            singles[keys[i]].fire(window.tokens[i], activation)
            if i:
                pair = (keys[i - 1], keys[i])
                pairs[pair].fire(window.tokens[i], activation)
                forms = previous_forms[pair]
                forms[window.tokens[i - 1]] = forms.get(window.tokens[i - 1], 0.0) + activation
            total += activation
    if total <= 0:
        raise ParseError("never fired")
    for key, tally in singles.items():
        tally.seen = seen[key]
    for pair, tally in pairs.items():
        tally.seen = seen_pairs[pair]
    counts = {key: tally.seen for key, tally in [*singles.items(), *pairs.items()]}
    label = explainer._label(dict(singles), dict(pairs), dict(previous_forms), total, window_keys)
    # the explainer counts occurrences itself for the tallies it reads: the same counts
    assert {key: tally.seen for key, tally in [*singles.items(), *pairs.items()]} == counts
    return label


@pytest.mark.parametrize("seed", range(4))
def test_labels_and_evidence_match_the_plain_reading(seed):
    explainer = TokenLookupExplainer(n_examples=12, max_tokens=3)
    compared = contexts = 0
    for record in seeded_records(seed):
        try:
            expected = plain_label(explainer, record)
        except ParseError:
            with pytest.raises(ParseError):
                explainer.explain(record)
            continue
        got = explainer.explain(record)
        assert (str(got), got.evidence) == (str(expected), expected.evidence), record.feature
        compared += 1
        contexts += any(t["previous"] is not None for t in got.evidence["tokens"])
    assert compared >= 40 and contexts >= 1  # the seeded set reaches the pair rule
