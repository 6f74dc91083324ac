"""The stratified bootstrap: resampling windows within the stratum they were drawn from."""

from __future__ import annotations

import asyncio
import random

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.scorers import SimulationScorer
from featurelens.scorers.bootstrap_strata import (
    check_bootstrap,
    stratified_bootstrap_correlation,
    window_stratum,
)
from featurelens.scorers.intervals import bootstrap_correlation
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

CAPS = frozenset({"prompt_logprobs"})


def _design(seed: int, n_each: int = 10) -> tuple[list[tuple[list[float], list[float]]], list[str]]:
    """Half activating windows (truth mostly high), half silent random ones; a noisy predictor."""
    rng = random.Random(seed)
    windows, strata = [], []
    for i in range(2 * n_each):
        activating = i % 2 == 0
        truth = [rng.choice([0, 4, 8, 10]) if activating else 0.0 for _ in range(16)]
        windows.append((truth, [t + rng.gauss(0, 3) for t in truth]))
        strata.append("activating" if activating else "random")
    return windows, strata


def test_one_stratum_is_the_pooled_bootstrap_draw_for_draw():
    windows, _ = _design(0)
    assert stratified_bootstrap_correlation(windows, ["all"] * len(windows), seed=7) == \
        bootstrap_correlation(windows, seed=7)


def test_on_a_stratified_design_the_interval_is_no_wider_than_the_pooled_one():
    wider = 0
    for seed in range(20):
        windows, strata = _design(seed)
        pooled = bootstrap_correlation(windows, seed=seed)
        stratified = stratified_bootstrap_correlation(windows, strata, seed=seed)
        assert stratified == stratified_bootstrap_correlation(windows, strata, seed=seed)
        wider += (stratified[1] - stratified[0]) > (pooled[1] - pooled[0]) + 1e-9
    # both are percentile estimates from 400 resamples, so allow an occasional tie-breaker
    assert wider <= 2


def test_undefined_and_too_few_windows_give_no_interval():
    assert stratified_bootstrap_correlation([([0.0] * 4, [1.0] * 4)] * 5, ["a"] * 5, seed=1) is None
    windows, strata = _design(1)
    assert stratified_bootstrap_correlation(windows[:1], strata[:1], seed=1) is None
    with pytest.raises(ValueError):
        stratified_bootstrap_correlation(windows, strata[:-1], seed=1)


def test_random_windows_are_one_stratum_and_activating_kinds_the_other():
    assert window_stratum("random") == "random"
    assert window_stratum("quantile") == window_stratum("top") == "activating"


def test_the_scorer_reports_the_pooled_interval_by_default_and_stratified_on_request():
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=3)[0]
    right = PLANTED["digits"][1]
    results = {}
    for bootstrap in ("stratified", "pooled", " Pooled "):
        scorer = SimulationScorer(bootstrap=bootstrap, adaptive=False)
        responses = [asyncio.run(RuleSimulator().complete(r)) for r in scorer.requests(record, right, CAPS)]
        results[bootstrap] = scorer.score(record, right, responses, CAPS)
        assert scorer.options()["bootstrap"] == bootstrap.strip().lower()
    assert results["stratified"].score == results["pooled"].score
    assert results["pooled"].metrics["interval"] == results[" Pooled "].metrics["interval"]
    assert results["stratified"].metrics["interval"] != results["pooled"].metrics["interval"]
    assert SimulationScorer().options()["bootstrap"] == "pooled"
    default = SimulationScorer(adaptive=False)
    responses = [asyncio.run(RuleSimulator().complete(r)) for r in default.requests(record, right, CAPS)]
    assert default.score(record, right, responses, CAPS).metrics["interval"] == results["pooled"].metrics["interval"]


def test_an_unknown_bootstrap_is_one_sentence():
    with pytest.raises(FeaturelensError, match=r"bootstrap='jackknife' is unknown; use stratified or pooled"):
        SimulationScorer(bootstrap="jackknife")
    assert check_bootstrap("POOLED") == "pooled"
