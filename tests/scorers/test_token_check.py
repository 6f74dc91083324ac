"""The token-check scorer: the label's tokens must pick activating windows out of random ones."""

from __future__ import annotations

import json

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.labelers.explainers.token_lookup import TokenLookupExplainer
from featurelens.llm.offline import OFFLINE_LLM
from featurelens.scorers.score_jobs import ScoreSpec, score_features
from featurelens.scorers.token_check import LabelMatcher, TokenCheckScorer
from featurelens.testing.planted_features import (
    PLANTED,
    planted_records,
    write_planted_store,
)
from featurelens.testing.planted_tokens import token_planted


def test_own_label_beats_another_features_label():
    explainer, scorer = TokenLookupExplainer(), TokenCheckScorer()
    planted = token_planted(30, seed=4)
    labels = [explainer.explain(p.record) for p in planted]
    for i, p in enumerate(planted):
        own = scorer.score(p.record, labels[i], []).score
        other = scorer.score(p.record, labels[(i + 7) % len(labels)], []).score
        assert own > 0.9, (labels[i], own)
        assert other < own - 0.3


def test_metrics_are_detection_style_and_held_out():
    record = planted_records(seed=0)[1]  # " cat"
    result = TokenCheckScorer(n_activating=20, n_random=20).score(record, '" cat" — 100%', [])
    assert result.status == "ok" and result.score == pytest.approx(1.0)
    m = result.metrics
    assert m["n_windows"] == 40 and m["held_out"] is True and m["quoted"] is True
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(1.0)
    assert m["token_recall"] == pytest.approx(1.0) and m["token_precision"] == pytest.approx(1.0)
    assert len(result.details["labels"]) == len(result.details["predictions"]) == 40


def test_pair_labels_only_match_after_the_named_token():
    matcher = LabelMatcher('" self" after "(" — 80% of top activation mass')
    assert matcher.positions(["(", "self", " self", "x"]) == [False, True, False, False]


def test_prose_labels_are_read_by_their_content_words():
    record = planted_records(seed=0)[1]
    scorer = TokenCheckScorer(n_activating=20, n_random=20)
    assert scorer.score(record, PLANTED["word"][1], []).score == pytest.approx(1.0)  # "the word 'cat'"
    assert scorer.score(record, "closing brackets", []).score <= 0.6


def test_a_label_with_nothing_to_look_for_is_undefined_not_zero():
    result = TokenCheckScorer().score(planted_records(seed=0)[0], "the feature", [])
    assert result.status == "undefined" and result.score is None


def test_bad_options_are_one_sentence():
    with pytest.raises(FeaturelensError, match="n_activating"):
        TokenCheckScorer(n_activating=0)


def test_score_through_the_engine_needs_no_llm(store):
    write_planted_store(store, planted_records(n_top=12, n_quantile=12, n_random=12))
    explain_features(store, ExplainSpec("local:smollm2", "token-lookup"))
    stats = score_features(store, ScoreSpec("local:smollm2", "token-check"))
    assert stats.succeeded == 3 and stats.calls == 0
    rows = store.execute("SELECT llm, score, metrics FROM scores ORDER BY feature")
    assert {r[0] for r in rows} == {OFFLINE_LLM}
    assert all(r[1] > 0.9 for r in rows)
    assert json.loads(rows[0][2])["held_out"] is True
    again = score_features(store, ScoreSpec("openai:gpt-4o-mini", "token-check"))
    assert again.skipped == 3 and again.jobs == 0


def test_label_cli_with_offline_explainer_and_scorer(store_path, cli):
    import featurelens

    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=12, n_quantile=12, n_random=12))
    result = cli("label", "--explainer", "token-lookup", "--scorer", "token-check", "--no-progress",
                 "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "3 scored" in result.output or "scored (token-check)" in result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM scores WHERE scorer = 'token-check'")[0][0] == 3


def test_offline_work_has_nothing_to_submit_and_costs_nothing(store_path, cli):
    import featurelens

    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=4, n_quantile=4, n_random=4))
    for args in (("explain", "--explainer", "token-lookup"), ("score", "--scorer", "token-check")):
        result = cli(*args, "--batch-api", "--llm", "openai:gpt-4o-mini", "--store", store_path)
        assert result.exit_code != 0 and "needs no LLM, so there is nothing to submit" in result.output
        assert "Traceback" not in result.output
    plan = cli("explain", "--explainer", "token-lookup", "--dry-run", "--store", store_path)
    assert "LLM calls:           0" in plan.output and "$0.00" in plan.output


def test_a_scorer_prepares_each_chunk_once_with_the_pairs_it_will_score(store):
    from featurelens.scorers.score_jobs import score_jobs

    write_planted_store(store, planted_records(n_top=12, n_quantile=12, n_random=12))
    explain_features(store, ExplainSpec(OFFLINE_LLM, "token-lookup", where="feature < 2"))
    seen: list[list[tuple[int, str]]] = []

    class Preparing(TokenCheckScorer):
        def prepare_chunk(self, pairs):
            seen.append([(record.feature, text) for record, text in pairs])

    spec = ScoreSpec(OFFLINE_LLM, "token-check")
    jobs = list(score_jobs(store, Preparing(), spec, frozenset(), chunk_size=1))
    labels = dict(store.execute("SELECT feature, text FROM explanations"))
    assert seen == [[(0, labels[0])], [(1, labels[1])], []] and len(jobs) == 2
    # what is already scored is not prepared again
    score_features(store, spec)
    seen.clear()
    assert list(score_jobs(store, Preparing(), spec, frozenset())) == [] and seen == [[]]
