"""The token-lookup explainer: LLM-free labels that name the planted token, with evidence."""

from __future__ import annotations

import json

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import Example, FeatureRecord, ParseError
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.labelers.explainers.token_lookup import TokenLookupExplainer
from featurelens.llm.offline import OFFLINE_LLM
from featurelens.llm.token_labels import (
    Element,
    parse_elements,
    render_label,
    token_key,
)
from featurelens.testing.planted_features import (
    PLANTED,
    planted_records,
    write_planted_store,
)
from featurelens.testing.planted_tokens import token_planted


def _names(label: str, rule) -> bool:
    """The label names at least one token, and every token it names is a planted one."""
    elements = parse_elements(label)
    return bool(elements) and all(rule(e.token) for e in elements)


def test_names_the_planted_token_for_at_least_95_percent_of_the_validation_set():
    explainer = TokenLookupExplainer()
    hits = total = 0
    for seed in range(10):  # the scorer-validation set: digits, one word, closing brackets
        for record, (rule, _) in zip(planted_records(seed=seed), PLANTED.values()):
            hits += _names(explainer.explain(record), rule)
            total += 1
    for planted in token_planted(60, seed=1):  # one token each, a third only after another
        label = explainer.explain(planted.record)
        hits += any(e.keys[0] == token_key(planted.token) for e in parse_elements(label))
        total += 1
    assert hits / total >= 0.95, f"{hits}/{total}"


def test_a_token_that_fires_only_after_another_is_named_with_it():
    explainer = TokenLookupExplainer()
    pairs = [p for p in token_planted(30, seed=2) if p.previous is not None]
    assert pairs
    for planted in pairs:
        elements = parse_elements(explainer.explain(planted.record))
        assert elements[0].keys == (token_key(planted.token), token_key(planted.previous))
    single = next(p for p in token_planted(30, seed=2) if p.previous is None)
    assert parse_elements(explainer.explain(single.record))[0].previous is None


def test_label_is_deterministic_and_carries_its_evidence():
    record = planted_records(seed=3)[1]  # the word " cat"
    first, second = TokenLookupExplainer().explain(record), TokenLookupExplainer().explain(record)
    assert first == second
    assert first.startswith('" cat" — ') and "% of top activation mass" in first
    assert first.evidence["coverage"] == pytest.approx(1.0)
    assert first.evidence["precision"] == pytest.approx(1.0)
    assert first.evidence["tokens"][0]["token"] == " cat"


def test_evidence_measures_coverage_and_precision():
    # " a" fires 3 times (mass 6) and is silent once; "x" takes the remaining mass 2.
    window = Example([" a", " a", "x", " a", " a"], [2.0, 2.0, 2.0, 2.0, 0.0], "top")
    record = FeatureRecord("d", 0, 2.0, 0.1, [window])
    label = TokenLookupExplainer(max_tokens=1).explain(record)
    assert label.evidence["coverage"] == pytest.approx(0.75)
    assert label.evidence["precision"] == pytest.approx(0.75)
    assert label == '" a" — 75% of top activation mass, fires on 75% of its occurrences'


def test_labels_read_back_exactly_whatever_the_token():
    odd = ['"', "\\", "a\nb", " <tag>", "after"]
    elements = [Element(t) for t in odd] + [Element(" self", "(")]
    parsed = parse_elements(render_label(elements, 0.5, None))
    assert [e.keys for e in parsed] == [e.keys for e in elements]


def test_a_feature_that_never_fired_is_refused():
    record = FeatureRecord("d", 0, 0.0, 0.0, [Example(["a", "b"], [0.0, 0.0], "top")])
    with pytest.raises(ParseError, match="no activating windows"):
        TokenLookupExplainer().explain(record)


def test_bad_options_are_one_sentence():
    with pytest.raises(FeaturelensError, match="target_coverage"):
        TokenLookupExplainer(target_coverage=0)
    with pytest.raises(FeaturelensError, match="max_tokens"):
        TokenLookupExplainer(max_tokens=0)


def test_explain_through_the_engine_records_no_llm_and_resumes(store):
    write_planted_store(store, planted_records(n_top=12, n_quantile=8, n_random=8))
    stats = explain_features(store, ExplainSpec("local:smollm2", "token-lookup"))
    assert stats.succeeded == 3 and stats.calls == 0
    rows = store.execute("SELECT feature, llm, text, options FROM explanations ORDER BY feature")
    assert {r[1] for r in rows} == {OFFLINE_LLM}
    assert rows[1][2].startswith('" cat"')
    options = json.loads(rows[1][3])
    assert options["coverage"] == pytest.approx(1.0) and options["precision"] == pytest.approx(1.0)
    again = explain_features(store, ExplainSpec("openai:gpt-4o-mini", "token-lookup"))
    assert again.skipped == 3 and again.jobs == 0  # same rows whatever --llm said, no key needed


def test_explain_cli_with_token_lookup(store_path, cli):
    import featurelens

    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=12, n_quantile=8, n_random=8))
    result = cli("explain", "--explainer", "token-lookup", "--no-progress", "--store", store_path)
    assert result.exit_code == 0, result.output
    shown = cli("sql", "SELECT count(*) AS n FROM explanations WHERE llm = 'offline:none'",
                "--store", store_path)
    assert "3" in shown.output


def test_quoted_tokens_read_as_the_json_decoder_reads_them():
    """Plain quoted tokens are read by slicing, the rest by the decoder: every quoted string a
    label can hold reads as the decoder reads it, and what the decoder refuses (a raw control
    character, a bad escape) is refused too."""
    import random
    import re

    from featurelens.llm.token_labels import _QUOTED, _unquote

    rng = random.Random(7)
    alphabet = ["a", " ", "é", "↵", '\\"', "\\\\", "\\u00e9", "\\n", "\\x", "\t", "\x00", "\x1f", "/"]
    checked = 0
    for _ in range(3000):
        quoted = '"' + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6))) + '"'
        if not re.fullmatch(_QUOTED, quoted):
            continue
        try:
            expected: str | None = json.loads(quoted)
        except json.JSONDecodeError:
            expected = None
        try:
            got: str | None = _unquote(quoted)
        except json.JSONDecodeError:
            got = None
        assert got == expected, quoted
        checked += 1
    assert checked > 2000
