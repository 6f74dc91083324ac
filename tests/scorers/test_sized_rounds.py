"""Later adaptive rounds sized from the interval (round_size=sized)."""

from __future__ import annotations

import asyncio

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.scorers import SimulationScorer
from featurelens.scorers.sized_rounds import next_size, plan
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

CAPS = frozenset({"prompt_logprobs"})


def test_next_size_projects_from_the_width_and_clamps():
    # 10 windows, interval 0.3 wide, target 0.25: 10 * (1.44 * 1.2 - 1) = 7.28 -> 8
    assert next_size(10, (0.5, 0.8), 0.25, minimum=4, maximum=10) == 8
    # just over the target: the minimum
    assert next_size(10, (0.5, 0.751), 0.25, minimum=4, maximum=10) == 4
    # far over: a full round at most
    assert next_size(10, (0.1, 0.9), 0.25, minimum=4, maximum=10) == 10
    # nothing known (undefined score, nothing scored): a full round
    assert next_size(10, None, 0.25, minimum=4, maximum=10) == 10
    assert next_size(0, (0.5, 0.8), 0.25, minimum=4, maximum=10) == 10
    assert next_size(10, (0.5, 0.8), 0.25, minimum=4, maximum=10, margin=1.0) == 5


def test_plan_sizes_each_round_from_the_answers_so_far():
    windows = list(range(30))
    widths = {10: 0.3, 18: 0.27, 22: 0.2}  # interval width after n windows

    def state(groups):
        n = sum(len(g) for g in groups)
        return (0.0, widths[n]), n

    def batch(part):
        return [list(part)] if part else []

    def sizes(answered):
        return plan(windows, 10, 10, answered, batch, state, lambda iv: iv[1] - iv[0] < 0.25,
                    lambda n, iv: next_size(n, iv, 0.25, 4, 10))

    groups, following = sizes(0)
    assert [len(g) for g in groups[:1]] == [10] and following == 1
    groups, following = sizes(1)  # 0.3 wide after 10: 8 more
    assert [len(g) for g in groups[:2]] == [10, 8] and following == 1
    groups, following = sizes(2)  # 0.27 after 18: ceil(18 * (1.1664 * 1.2 - 1)) = 8 -> 8
    assert [len(g) for g in groups[:3]] == [10, 8, 8] and following == 1
    assert [len(g) for g in groups] == [10, 8, 8, 4]  # the rest follows in full rounds (a dry run's plan)
    widths[26] = 0.2
    groups, following = sizes(3)  # narrow after 26: settled
    assert following == 0 and sum(len(g) for g in groups) == 30


def _rounds(scorer, record, explanation, simulator):
    requests = scorer.requests(record, explanation, CAPS)
    responses = [asyncio.run(simulator.complete(r)) for r in requests]
    sent = [requests]
    while more := scorer.more_requests(record, explanation, responses, CAPS):
        sent.append(more)
        responses += [asyncio.run(simulator.complete(r)) for r in more]
    return sent, responses, scorer.score(record, explanation, responses, CAPS)


def test_sized_rounds_add_fewer_windows_and_rescore_the_same_rounds():
    records = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=4)
    oracle = NoisyOracle(records, {"so-so": Planted("planted", 0, 0.6)}, noise=2.0)
    sized = SimulationScorer(round_size="sized", ci_width=0.15)
    fixed = SimulationScorer(round_size="fixed", ci_width=0.15)
    seen_partial = False
    for record in records[:3]:
        sent, responses, result = _rounds(sized, record, "so-so", oracle)
        sizes = [sum(r.prompt.split("<texts>")[-1].count("\n\n") + 1 for r in batch) for batch in sent]
        assert sizes[0] == 10 and all(4 <= s <= 10 for s in sizes[1:])
        seen_partial |= any(s < 10 for s in sizes[1:])
        assert result.metrics["n_windows"] == sum(sizes) == result.metrics["n_windows_scored"]
        assert result.metrics["n_windows_max"] == 100
        # the same answers give the same plan: scoring again reads the same windows
        assert sized.score(record, "so-so", responses, CAPS).score == result.score
        low, high = result.metrics["interval"]
        assert high - low < 0.15 or sum(sizes) == 100
        _, _, old = _rounds(fixed, record, "so-so", oracle)
        assert old.metrics["n_windows"] % 10 == 0
    assert seen_partial


def test_sized_rounds_are_the_default_fixed_ones_reachable_and_both_part_of_the_options():
    assert SimulationScorer().options()["round_size"] == "sized"
    assert SimulationScorer().options()["min_round"] == 4
    assert SimulationScorer(round_size="fixed").options()["round_size"] == "fixed"
    assert SimulationScorer(round_size="sized", min_round=2).options()["min_round"] == 2
    # without rounds there is nothing to size
    assert "round_size" not in SimulationScorer(round_size="sized", adaptive=False).options()
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=4)[0]
    right = PLANTED["digits"][1]
    _, responses, result = _rounds(SimulationScorer(round_size="sized"), record, right, RuleSimulator())
    assert len(responses) == 1 and result.metrics["n_windows"] == 10  # a clear feature stops at once


def test_bad_round_size_options_are_one_sentence():
    with pytest.raises(FeaturelensError, match=r"round_size='tiny' is unknown; use fixed or sized"):
        SimulationScorer(round_size="tiny")
    with pytest.raises(FeaturelensError, match=r"min_round=11 must be between 1 and round_windows \(10\)"):
        SimulationScorer(round_size="sized", min_round=11)


def test_a_larger_first_round_then_sized_rounds_and_a_dry_run_prices_full_rounds():
    records = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=8)
    record = records[0]
    oracle = NoisyOracle(records, {"q": Planted(record.dictionary_id, record.feature, 0.3)}, noise=3.0)
    scorer = SimulationScorer(first_round=20, ci_width=0.05)
    sent, _, result = _rounds(scorer, record, "q", oracle)
    sizes = [sum(r.prompt.split("<texts>")[-1].count("\n\n") + 1 for r in batch) for batch in sent]
    assert sizes[0] == 20 and all(4 <= s <= 10 for s in sizes[1:]) and sum(sizes) == 100
    assert result.metrics["n_windows"] == 100
    # no answers yet: the first round, then full rounds of round_windows (what --dry-run prices)
    every = scorer.all_requests(record, "q", CAPS)
    assert [r.prompt.split("<texts>")[-1].count("\n\n") + 1 for r in every] == [20] + [10] * 8
