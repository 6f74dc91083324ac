"""Simulation scorer: its three modes, honest failures, and planted-feature validation."""

from __future__ import annotations

import asyncio
import math

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    Example,
    FeatureRecord,
    LLMResponse,
    TokenLogprobs,
)
from featurelens.scorers import SimulationScorer
from featurelens.scorers.metrics import pearson
from featurelens.scorers.simulation_parse import expected_value, from_json, from_lines
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

MODES = {
    "prompt-logprobs": frozenset({"prompt_logprobs", "output_logprobs"}),
    "output-logprobs": frozenset({"output_logprobs"}),
    "json": frozenset(),
}


def run(scorer, record, explanation, simulator):
    requests = scorer.requests(record, explanation, simulator.capabilities)
    responses = [asyncio.run(simulator.complete(r)) for r in requests]
    return requests, scorer.score(record, explanation, responses, simulator.capabilities)


def test_pearson_and_undefined_cases():
    assert pearson([0, 1, 2], [0, 2, 4]) == pytest.approx(1.0)
    assert pearson([0, 1, 2], [4, 2, 0]) == pytest.approx(-1.0)
    assert pearson([0, 0, 0], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [5, 5, 5]) is None
    assert pearson([1], [1]) is None


def test_expected_value_renormalises_over_digit_tokens_only():
    top = {"0": math.log(0.3), " 10": math.log(0.1), "unknown": math.log(0.5), "x": math.log(0.1)}
    assert expected_value(top) == pytest.approx(10 * 0.1 / 0.4)
    assert expected_value({"unknown": 0.0, "11": -1.0, "07": -1.0}) is None


@pytest.mark.parametrize("mode", list(MODES))
def test_faithful_simulator_ranks_right_explanation_far_above_wrong(mode):
    records = planted_records(seed=1)
    simulator = RuleSimulator(capabilities=MODES[mode])
    scorer = SimulationScorer()
    for record, (name, (_, right)) in zip(records, PLANTED.items()):
        requests, result = run(scorer, record, right, simulator)
        assert result.status == "ok" and result.metrics["mode"] == mode
        assert result.score > 0.8, (name, result.score)
        assert result.n_parse_failures == 0 and result.metrics["held_out"]
        for other, (_, wrong) in PLANTED.items():
            if other != name:
                _, bad = run(scorer, record, wrong, simulator)
                assert bad.score is not None and bad.score < 0.2, (name, other, bad.score)


def test_all_at_once_packs_many_windows_per_prompt_with_a_shared_prefix():
    record = planted_records()[0]
    scorer = SimulationScorer(adaptive=False, window=32)  # packing of the full, uncropped test set
    requests = scorer.requests(record, "digits", MODES["prompt-logprobs"])
    assert len(requests) == 4  # 100 windows, 25 per prompt
    assert all(r.prompt_logprobs and r.max_tokens == 0 for r in requests)
    intro = requests[0].prompt.split("Feature explanation: digits")[0]
    assert all(r.prompt.startswith(intro) for r in requests)
    assert sum(r.prompt.count("\t?") for r in requests) == sum(
        len(e.tokens) for e in record.examples if e.kind in ("quantile", "random"))
    # deterministic: a rerun sends identical prompts, so the response cache hits
    assert [r.prompt for r in scorer.requests(record, "digits", MODES["prompt-logprobs"])] == \
        [r.prompt for r in requests]


def test_constant_truth_is_undefined_not_zero():
    tokens = [" a", " b", " c"]
    record = FeatureRecord("d", 0, 1.0, 0.0, [Example(tokens, [0.0] * 3, "random")] * 2
                           + [Example(tokens, [0.0] * 3, "top")])
    _, result = run(SimulationScorer(), record, "digits", RuleSimulator())
    assert result.status == "undefined" and result.score is None


def test_unreadable_answers_are_counted_never_zero():
    record = planted_records()[0]
    scorer = SimulationScorer(mode="json", n_activating=4, n_random=4, per_prompt=4)
    requests = scorer.requests(record, "digits", frozenset())
    good = asyncio.run(RuleSimulator(capabilities=frozenset()).complete(requests[0]))
    result = scorer.score(record, "digits", [good, LLMResponse(text="I think they are all 3")])
    assert result.n_parse_failures == 4 and result.status == "ok"
    assert result.metrics["n_windows_scored"] == 4
    failed = scorer.score(record, "digits", [LLMResponse(text="{}"), None])
    assert failed.status == "failed" and failed.score is None
    assert failed.n_parse_failures == 4 and failed.metrics["n_failed_requests"] == 1


def test_wrong_length_lines_and_json_are_parse_failures():
    lines = from_lines(LLMResponse(text="1: 0 0 3\n2: 0 1\n3: 0 0 12"), [3, 3, 3])
    assert lines[0] == [0, 0, 3]
    assert isinstance(lines[1], ValueError) and isinstance(lines[2], ValueError)
    parsed = from_json(LLMResponse(text='```json\n{"1": [0, 10], "2": [1]}\n```'), [2, 2])
    assert parsed[0] == [0.0, 10.0] and isinstance(parsed[1], ValueError)


def test_output_logprobs_refine_written_digits():
    tokens = [TokenLogprobs("1:", 0.0), TokenLogprobs(" 0", 0.0, {" 0": math.log(0.5), " 4": math.log(0.5)}),
              TokenLogprobs(" 10", 0.0, {" 10": 0.0})]
    response = LLMResponse(text="1: 0 10", output_logprobs=tokens)
    assert from_lines(response, [2]) == [[2.0, 10.0]]


def test_misaligned_prompt_logprobs_fail_every_window():
    scorer = SimulationScorer(n_activating=2, n_random=2)
    record = planted_records()[0]
    broken = LLMResponse(text="", prompt_logprobs=[TokenLogprobs("unknown", 0.0, {"0": 0.0})])
    result = scorer.score(record, "digits", [broken], MODES["prompt-logprobs"])
    assert result.status == "failed" and result.n_parse_failures == 4


def test_bad_options_are_one_clear_sentence():
    with pytest.raises(FeaturelensError, match="mode 'psychic' is unknown"):
        SimulationScorer(mode="psychic")
    with pytest.raises(FeaturelensError, match="n_activating"):
        SimulationScorer(n_activating=0)
