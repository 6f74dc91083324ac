"""Stratified rounds: every prefix of the test windows looks like the whole set; the full score is unchanged."""

from __future__ import annotations

import asyncio
import random

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.scorers.scoring_windows import test_windows as windows_for
from featurelens.scorers.simulation import SimulationScorer
from featurelens.scorers.window_order import by_quantile, interleave
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

CAPS = frozenset({"prompt_logprobs"})


def test_interleave_keeps_every_prefix_in_proportion():
    first, second = [f"a{i}" for i in range(30)], [f"b{i}" for i in range(70)]
    merged = interleave(first, second)
    assert sorted(merged) == sorted(first + second)
    assert [x for x in merged if x.startswith("a")] == first  # each list keeps its own order
    for k in range(1, len(merged) + 1):
        assert abs(sum(x.startswith("a") for x in merged[:k]) - k * 0.3) <= 1
    assert interleave([], ["x", "y"]) == ["x", "y"] and interleave(["x"], []) == ["x"]


def test_by_quantile_deals_one_window_of_every_bin_before_a_second():
    windows = [(q, i) for q in range(4) for i in range(5)]
    dealt = by_quantile(windows, [q for q, _ in windows], random.Random(0))
    assert sorted(dealt) == sorted(windows)
    for start in range(0, 20, 4):
        assert sorted(q for q, _ in dealt[start:start + 4]) == [0, 1, 2, 3]


def test_stratified_windows_are_the_same_windows_and_every_round_holds_both_kinds():
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=4)[0]
    shuffled, _ = windows_for(record, 50, 50, 16, "simulation")
    stratified, _ = windows_for(record, 50, 50, 16, "simulation", order="stratified")
    def key(w):
        return w.example.kind, tuple(w.example.tokens)

    assert sorted(map(key, shuffled)) == sorted(map(key, stratified))
    assert [key(w) for w in stratified] == [key(w) for w in windows_for(
        record, 50, 50, 16, "simulation", order="stratified")[0]]  # seeded: a rerun sends the same rounds
    for start in range(0, 100, 10):
        kinds = [w.example.kind for w in stratified[start:start + 10]]
        assert kinds.count("quantile") == 5 and kinds.count("random") == 5
    first_quantiles = {w.example.quantile for w in stratified[:10] if w.example.kind == "quantile"}
    assert len(first_quantiles) == len({w.example.quantile for w in stratified if w.example.kind == "quantile"})


def _score(scorer: SimulationScorer, record, explanation: str, simulator) -> tuple[float, int]:
    requests = scorer.requests(record, explanation, CAPS)
    responses = []
    while requests:
        responses += [asyncio.run(simulator.complete(r)) for r in requests]
        requests = scorer.more_requests(record, explanation, responses, CAPS)
    result = scorer.score(record, explanation, responses, CAPS)
    return result.score, result.metrics["n_windows"]


def test_the_full_score_does_not_depend_on_the_order():
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=2)[1]
    oracle = NoisyOracle([record], {"x": Planted(record.dictionary_id, record.feature, 0.6)}, noise=2.0)
    full = [_score(SimulationScorer(adaptive=False, order=order), record, "x", oracle)
            for order in ("shuffled", "stratified")]
    assert full[0][1] == full[1][1] == 100
    assert full[0][0] == pytest.approx(full[1][0], abs=1e-9)


def test_the_default_is_stratified_at_width_0_25_and_a_bad_order_is_one_sentence():
    scorer = SimulationScorer()
    assert scorer.options()["order"] == "stratified" and scorer.options()["ci_width"] == 0.25
    assert SimulationScorer(order="Shuffled").options()["order"] == "shuffled"
    with pytest.raises(FeaturelensError, match=r"order='random' is unknown; use shuffled or stratified"):
        SimulationScorer(order="random")


def test_a_faithful_explanation_stops_after_one_stratified_round():
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=1)[0]
    score, windows = _score(SimulationScorer(), record, PLANTED["digits"][1], RuleSimulator())
    assert windows == 10 and score > 0.85


def test_the_oracle_salt_draws_fresh_noise_for_the_same_prompt():
    record = planted_records(length=16, n_top=5, n_quantile=10, n_random=10, seed=0)[0]
    registry = {"x": Planted(record.dictionary_id, record.feature, 0.5)}
    request = SimulationScorer(adaptive=False).requests(record, "x", CAPS)[0]

    def values(oracle):
        return [p.top for p in oracle.answer(request).prompt_logprobs if p.top]

    assert values(NoisyOracle([record], registry)) == values(NoisyOracle([record], registry, salt=""))
    assert values(NoisyOracle([record], registry)) != values(NoisyOracle([record], registry, salt="retest"))
