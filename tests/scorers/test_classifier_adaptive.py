"""Detection and fuzzing defaults (measured by benchmarks/cost_classifiers.py) and when rounds stop."""

from __future__ import annotations

import asyncio

import pytest

from featurelens.scorers import DetectionScorer, FuzzingScorer
from featurelens.scorers.adaptive import Rounds
from featurelens.scorers.classifier import ADAPTIVE, CI_WIDTH, ROUND_WINDOWS
from featurelens.scorers.score_jobs import ScoreSpec, build_scorer
from featurelens.testing.classifier_oracle import NoisyJudge
from featurelens.testing.oracle import Planted
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records


def _rounds(scorer, record, explanation, judge):
    """What the engine does: the first round, then follow-ups until the scorer says stop."""
    responses = [asyncio.run(judge.complete(r)) for r in scorer.requests(record, explanation)]
    while more := scorer.more_requests(record, explanation, responses):
        responses += [asyncio.run(judge.complete(r)) for r in more]
    return responses, scorer.score(record, explanation, responses)


@pytest.mark.parametrize("name", ["detection", "fuzzing"])
def test_the_scorers_use_the_measured_defaults(name):
    # the values BENCHMARKS.md ("Detection and fuzzing: adaptive default") reports as cheapest faithful
    assert (ADAPTIVE, CI_WIDTH, ROUND_WINDOWS) == (True, 0.35, 20)
    scorer = build_scorer(ScoreSpec("rule:json", name))
    assert scorer.rounds == Rounds(True, 0.35, 20)
    assert scorer.options() == {"n_activating": 50, "n_random": 50, "window": 32, "per_prompt": 5,
                                     "adaptive": True, "ci_width": 0.35, "round_windows": 20, "confidence": 0.95}
    assert build_scorer(ScoreSpec("rule:json", name, (("adaptive", "false"),))).rounds.enabled is False


def test_adaptive_detection_stops_early_when_clear_cut_and_uses_every_window_when_ambiguous():
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=7)[0]
    scorer = DetectionScorer()
    responses, clear = _rounds(scorer, record, PLANTED["digits"][1], RuleSimulator(capabilities=frozenset()))
    assert clear.score == 1.0 and clear.metrics["n_windows_max"] == 100
    assert clear.metrics["n_windows"] == ROUND_WINDOWS and len(responses) == ROUND_WINDOWS // 5  # one round
    low, high = clear.metrics["interval"]
    assert high - low < CI_WIDTH
    # a judge that guesses: its interval is at its widest, so rounds go on (at the default width, to 40 or more)
    judge = NoisyJudge([record], {"vague": Planted("planted", 0, 0.0)}, [scorer])
    _, guessed = _rounds(scorer, record, "vague", judge)
    assert guessed.metrics["n_windows"] >= 2 * ROUND_WINDOWS and abs(guessed.score - 0.5) < 0.2
    # and with a tighter width it never settles: every window up to the hard maximum
    strict = DetectionScorer(ci_width=0.2)
    responses, ambiguous = _rounds(strict, record, "vague", judge)
    assert ambiguous.metrics["n_windows"] == 100 and len(responses) == 20


def test_the_noisy_judge_is_right_at_its_quality_and_deterministic():
    records = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=8)
    scorers = [DetectionScorer(adaptive=False), FuzzingScorer(adaptive=False)]
    qualities = {"perfect": 1.0, "half": 0.5, "none": 0.0}
    judge = NoisyJudge(records, {k: Planted("planted", 1, q) for k, q in qualities.items()}, scorers)
    for scorer in scorers:
        scores = {k: _rounds(scorer, records[1], k, judge)[1].score for k in qualities}
        assert scores["perfect"] == 1.0
        assert 0.6 < scores["half"] < 0.9 and abs(scores["none"] - 0.5) < 0.15
        assert _rounds(scorer, records[1], "half", judge)[1].score == scores["half"]
    # an explanation it was not given, or a window it does not know, is a coin flip, still a list
    answer = asyncio.run(judge.complete(scorers[0].all_requests(records[1], "unregistered")[0]))
    assert answer.text.startswith("[") and answer.text.count(",") == 4


class _Mumbler:
    """Answers every request with a list of the wrong length."""

    name, model, capabilities = "mumble", "m", frozenset()

    async def complete(self, request):
        from featurelens.core.host.protocols import LLMResponse
        return LLMResponse(text="Maybe [1, 0]?")


def test_unusable_answers_over_several_rounds_fail_the_feature_not_the_run(store):
    import polars as pl

    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import score_features
    from featurelens.testing.planted_features import write_planted_store

    write_planted_store(store, planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=9))
    store.insert("explanations", pl.DataFrame([{"explanation_id": "e0", "dictionary_id": "planted", "feature": 0,
                                                "explainer": "manual", "llm": "human:test", "text": "digits"}]))
    stats = score_features(store, ScoreSpec("mumble:m", "detection"), provider=_Mumbler(),
                           settings=EngineSettings(progress=False, concurrency=2))
    assert (stats.succeeded, stats.failed, stats.calls) == (0, 1, 20)  # every round asked, then one failure
    reason = store.execute("SELECT reason FROM failures WHERE stage = 'score:detection'")[0][0]
    assert "lists 2 values for 5 examples" in reason
    assert store.execute("SELECT count(*) FROM llm_cache")[0][0] == 0  # every round's answers rejected
