"""Adaptive scoring: intervals, rounds that stop early, and what the store keeps."""

from __future__ import annotations

import asyncio
import json

import polars as pl
import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.llm.engine import EngineSettings
from featurelens.scorers import DetectionScorer, SimulationScorer
from featurelens.scorers.intervals import bootstrap_correlation, wilson
from featurelens.scorers.score_jobs import (
    ScoreSpec,
    build_scorer,
    score_features,
    score_jobs,
)
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import (
    PLANTED,
    RuleSimulator,
    planted_records,
    write_planted_store,
)

CAPS = frozenset({"prompt_logprobs"})


def _quiet() -> EngineSettings:
    return EngineSettings(progress=False, concurrency=4)


def test_wilson_matches_the_textbook_values():
    low, high = wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson(0, 10)[0] == pytest.approx(0.0) and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) is None


def test_bootstrap_interval_is_deterministic_and_narrows_with_more_windows():
    import random

    rng = random.Random(0)
    windows = []
    for _ in range(100):
        truth = [rng.choice([0, 0, 0, 5, 9]) for _ in range(16)]
        windows.append((truth, [t + rng.gauss(0, 3) for t in truth]))
    few = bootstrap_correlation(windows[:10], seed=1)
    many = bootstrap_correlation(windows, seed=1)
    assert few == bootstrap_correlation(windows[:10], seed=1)
    assert many[1] - many[0] < few[1] - few[0]
    assert many[0] < 0.8 < many[1]  # the pooled correlation is about 0.8 here
    assert bootstrap_correlation([([0.0] * 4, [1.0] * 4)] * 5, seed=1) is None
    assert bootstrap_correlation(windows[:1], seed=1) is None


def _rounds(scorer, record, explanation, simulator):
    """What the engine does: first round, then follow-ups until none."""
    requests = scorer.requests(record, explanation, CAPS)
    responses = [asyncio.run(simulator.complete(r)) for r in requests]
    while more := scorer.more_requests(record, explanation, responses, CAPS):
        responses += [asyncio.run(simulator.complete(r)) for r in more]
    return responses, scorer.score(record, explanation, responses, CAPS)


def test_clear_explanations_stop_after_the_first_round_noisy_ones_use_every_window():
    records = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=4)
    record, right = records[0], PLANTED["digits"][1]
    scorer = SimulationScorer(adaptive=True, ci_width=0.2, round_windows=20)
    responses, result = _rounds(scorer, record, right, RuleSimulator())
    assert len(responses) == 1 and result.metrics["n_windows_scored"] == 20
    low, high = result.metrics["interval"]
    assert high - low < 0.2 and low <= result.score <= high
    fixed = SimulationScorer(adaptive=False)
    full = fixed.score(record, right, [asyncio.run(RuleSimulator().complete(r)) for r in
                                       fixed.requests(record, right, CAPS)], CAPS)
    assert full.metrics["n_windows_scored"] == 100 and abs(full.score - result.score) < 0.1
    # a weak simulator never pins the score down to +-0.025: rounds continue to the hard maximum
    oracle = NoisyOracle(records, {"vague": Planted("planted", 0, 0.3)}, noise=3.0)
    strict = SimulationScorer(adaptive=True, ci_width=0.05, round_windows=20)
    responses, weak = _rounds(strict, record, "vague", oracle)
    assert len(responses) == 5 and weak.metrics["n_windows_scored"] == 100
    assert weak.metrics["n_windows_max"] == 100


def test_detection_rounds_use_a_wilson_interval():
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=5)[0]
    scorer = DetectionScorer(adaptive=True, ci_width=0.35, round_windows=20)
    requests = scorer.requests(record, "digits and numbers", frozenset())
    assert len(requests) == 4  # 20 windows, 5 per prompt
    responses = [asyncio.run(RuleSimulator().complete(r)) for r in requests]
    result = scorer.score(record, "digits and numbers", responses)
    low, high = result.metrics["interval"]
    assert low <= result.score <= high and result.metrics["n_windows_scored"] == 20
    assert len(scorer.all_requests(record, "digits and numbers")) == 20


@pytest.fixture
def planted(store):
    write_planted_store(store, planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=6))
    store.insert("explanations", pl.DataFrame([
        {"explanation_id": f"e{f}{i}", "dictionary_id": "planted", "feature": f, "explainer": "manual",
         "llm": "human:test", "text": text}
        for f in range(3) for i, (_, (_, text)) in enumerate(PLANTED.items())]))
    return store


def test_adaptive_scores_store_windows_and_interval_and_cost_fewer_calls(planted):
    adaptive = ScoreSpec("rule:keywords", "simulation", (("adaptive", True), ("ci_width", 0.2),
                                                          ("round_windows", 20)))
    stats = score_features(planted, adaptive, provider=RuleSimulator(), settings=_quiet())
    assert (stats.succeeded, stats.failed) == (9, 0)
    full = ScoreSpec("rule:keywords", "simulation", (("adaptive", False),))
    full_stats = score_features(planted, full, provider=RuleSimulator(), settings=_quiet())
    assert stats.calls < full_stats.calls == 9 * 4
    rows = planted.sql("SELECT s.feature, e.text, s.score, s.n_windows, s.ci_low, s.ci_high, s.options "
                       "FROM scores s JOIN explanations e USING (explanation_id)").to_dicts()
    names = list(PLANTED)
    for row in rows:
        is_adaptive = json.loads(row["options"]).get("adaptive", False)
        assert row["n_windows"] in ((20, 40, 60, 80, 100) if is_adaptive else (100,))
        if row["score"] is not None:
            assert row["ci_low"] <= row["score"] <= row["ci_high"]
        if is_adaptive and PLANTED[names[row["feature"]]][1] == row["text"]:
            assert row["score"] > 0.8 and row["n_windows"] < 100
    # every round went through the engine: one llm_calls row per request
    calls = planted.sql("SELECT count(*) AS n FROM llm_calls").item()
    assert calls == stats.calls + full_stats.calls
    again = score_features(planted, adaptive, provider=RuleSimulator(), settings=_quiet())
    assert again.calls == 0 and again.skipped == 9


def test_live_jobs_ask_round_by_round_dry_run_jobs_carry_every_round(planted):
    spec = ScoreSpec("rule:keywords", "simulation", (("adaptive", True), ("round_windows", 20)))
    scorer = build_scorer(spec)
    live = list(score_jobs(planted, scorer, spec, CAPS))
    batch = list(score_jobs(planted, scorer, spec, CAPS, every_round=True))
    assert [len(j.requests) for j in live] == [1] * 9 and all(j.follow_up for j in live)
    assert [len(j.requests) for j in batch] == [5] * 9 and not any(j.follow_up for j in batch)


def test_bad_adaptive_options_are_one_sentence(cli, planted, store_path):
    with pytest.raises(FeaturelensError, match="true or false"):
        SimulationScorer(adaptive="maybe")
    with pytest.raises(FeaturelensError, match="ci_width"):
        DetectionScorer(adaptive=True, ci_width=0)
    result = cli("score", "--store", str(store_path), "--llm", "local:smollm2", "-o", "ci_width=-1",
                 "--dry-run")
    assert result.exit_code != 0 and "ci_width" in result.output and "Traceback" not in result.output


def test_noisy_oracle_is_exact_without_noise_and_degrades_with_it():
    records = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=7)
    record = records[1]
    scorer = SimulationScorer(window=16)
    scores = {}
    for quality, noise in ((1.0, 0.0), (0.5, 2.0), (0.0, 2.0)):
        oracle = NoisyOracle(records, {"x": Planted("planted", 1, quality)}, noise=noise)
        responses = [asyncio.run(oracle.complete(r)) for r in scorer.requests(record, "x", CAPS)]
        result = scorer.score(record, "x", responses, CAPS)
        assert result.n_parse_failures == 0
        scores[quality] = result.score
    assert scores[1.0] == pytest.approx(1.0)
    assert scores[1.0] > scores[0.5] > 0.2 > abs(scores[0.0])


def test_dry_run_counts_every_round_as_the_upper_bound(planted):
    from featurelens.scorers.score_jobs import plan_score

    adaptive = plan_score(planted, ScoreSpec("local:smollm2", "simulation"))
    fixed = plan_score(planted, ScoreSpec("local:smollm2", "simulation", (("adaptive", False),)))
    assert adaptive.calls == 9 * 10 and fixed.calls == 9 * 4  # rounds of 10 windows vs 25 per prompt
    assert adaptive.input_tokens > fixed.input_tokens  # each round repeats the prefix
