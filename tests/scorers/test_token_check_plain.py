"""token-check gives, on seeded mixed records, exactly the scores and metrics of its plain
reading: every position of every window marked named or not, then counted."""

from __future__ import annotations

import pytest
from seeded_records import seeded_records

from featurelens.core.host.protocols import FeatureRecord
from featurelens.labelers.explainers.token_lookup import TokenLookupExplainer
from featurelens.llm.window_text import HIGHLIGHT_FRACTION
from featurelens.scorers.metrics import classification
from featurelens.scorers.scoring_windows import test_windows as held_out_windows
from featurelens.scorers.token_check import LabelMatcher, TokenCheckScorer


def plain_score(scorer: TokenCheckScorer, record: FeatureRecord, label: str) -> tuple:
    matcher = LabelMatcher(label)
    windows, held_out = held_out_windows(record, scorer.n_activating, scorer.n_random, scorer.window,
                                         scorer.name)
    labels, predictions = [], []
    named_firing = firing = named = named_and_firing = 0
    for w in windows:
        hits = matcher.positions(w.example.tokens)
        labels.append(int(w.activating))
        predictions.append(int(any(hits)))
        if w.activating:
            peak = w.example.max_activation
            fires = [a > 0 and a >= HIGHLIGHT_FRACTION * peak for a in w.example.activations]
            firing += sum(fires)
            named_firing += sum(1 for h, f in zip(hits, fires) if h and f)
            named += sum(hits)
            named_and_firing += sum(1 for h, a in zip(hits, w.example.activations) if h and a > 0)
    metrics = classification(labels, predictions)
    metrics.update(n_windows=len(windows), held_out=held_out, quoted=matcher.quoted,
                   token_recall=named_firing / firing if firing else None,
                   token_precision=named_and_firing / named if named else None)
    return metrics["balanced_accuracy"], metrics, {"labels": labels, "predictions": predictions}


def test_positions_and_hits_agree():
    matcher = LabelMatcher('" self" after "(" and " cat"')
    tokens = ["(", "self", " self", "x", " Cat", "(", " self"]
    assert matcher.hits(tokens) == [i for i, h in enumerate(matcher.positions(tokens)) if h]
    assert matcher.hits(tokens) == [1, 4, 6] and matcher.any_hit(tokens) and not matcher.any_hit(["x"])


@pytest.mark.parametrize("seed", range(4))
def test_scores_and_metrics_match_the_plain_reading(seed):
    scorer, explainer = TokenCheckScorer(n_activating=8, n_random=6, window=16), TokenLookupExplainer()
    scored = 0
    for record in seeded_records(seed):
        labels = ["cat sat on the mat", '"(" and "." ']
        try:
            labels.append(str(explainer.explain(record)))
        except Exception:
            pass
        for label in labels:
            if not LabelMatcher(label):
                continue
            result = scorer.score(record, label, [])
            assert (result.score, result.metrics, result.details) == plain_score(scorer, record, label)
            scored += 1
    assert scored >= 120


@pytest.mark.parametrize("label", ['" self" after "("', '" self" after "(" and " cat"', '"(" after "(" and ")"',
                                   '"x"', "cat sat on the mat"])
def test_hits_are_the_literal_reading_of_named_tokens_and_pairs(label):
    import random

    from featurelens.llm.token_labels import token_key

    matcher = LabelMatcher(label)
    vocab = ["(", " self", "self", " Cat", " cat", ")", "x", " mat", "\n"]
    rng = random.Random(label)
    for _ in range(200):
        tokens = [rng.choice(vocab) for _ in range(rng.randrange(0, 12))]
        keys = [token_key(t) for t in tokens]
        literal = [i for i, k in enumerate(keys)
                   if k in matcher.singles or (i > 0 and (k, keys[i - 1]) in matcher.pairs)]
        assert matcher.hits(tokens) == literal, tokens
        assert matcher.any_hit(tokens) == bool(literal)


@pytest.mark.parametrize("seed", range(2))
def test_each_window_carries_its_peak_and_cropping_keeps_it(seed):
    windows_seen = 0
    for record in seeded_records(seed):
        for width in (4, 16):
            windows, _ = held_out_windows(record, 8, 6, width, "token-check")
            for w in windows:
                assert w.peak == w.example.max_activation and len(w.example.tokens) <= width
                assert w.activating == (True if w.example.kind != "random" else w.peak > 0)
                windows_seen += 1
    assert windows_seen > 100


def test_a_shared_matcher_reads_every_label_as_its_own_matcher_does():
    """Labels whose evidence quotes nothing share the matcher of their quoted part; any other
    label (prose, quotes after the dash, odd quoting across it) is read whole."""
    import random

    from featurelens.llm.token_labels import Element, render_label
    from featurelens.scorers.token_check import matcher_of

    rng = random.Random(3)
    odd = ['"', "\\", "a\nb", " self", "(", " —", " — ", "after", " x"]
    labels = ['cat sat on the mat — 80% of top mass', '" self" — "quoted" evidence', '"a — b"',
              '"unclosed — 40%', '"a\\" — 3%', 'plain — "x"', '" — "', ' — ', '"x" —', "— 5%"]
    for _ in range(300):
        elements = [Element(rng.choice(odd), rng.choice([None, *odd])) for _ in range(rng.randrange(1, 4))]
        labels.append(render_label(elements, rng.random(), rng.choice([None, rng.random()])))
        labels.append(rng.choice(labels) + rng.choice([" — 12%", ' — "y"', " —", ""]))
    for label in labels:
        shared, own = matcher_of(label), LabelMatcher(label)
        assert (shared.quoted, shared.singles, shared.pairs) == (own.quoted, own.singles, own.pairs), label
