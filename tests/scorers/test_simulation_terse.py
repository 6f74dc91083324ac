"""The terse line format: the dense lines under a shorter instruction, now the default."""

from __future__ import annotations

import asyncio

import pytest

from featurelens.scorers import SimulationScorer, prompts
from featurelens.scorers.simulation_lines import FORMATS
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

LOGPROBS = frozenset({"prompt_logprobs"})



def _requests(line_format: str | None):
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=2)[0]
    options = {"line_format": line_format} if line_format else {}
    scorer = SimulationScorer(adaptive=False, **options)
    return record, scorer, scorer.requests(record, "digits", LOGPROBS)


def test_terse_is_the_default_and_differs_from_dense_only_in_the_instruction():
    _, default, terse = _requests(None)
    _, _, dense = _requests("dense")
    assert default.options()["line_format"] == "terse"
    for t, d in zip(terse, dense, strict=True):
        assert t.prompt.startswith(prompts.ALL_AT_ONCE_TERSE_INTRO + "\n")
        assert d.prompt.startswith(prompts.ALL_AT_ONCE_DENSE_INTRO + "\n")
        assert t.prompt[len(prompts.ALL_AT_ONCE_TERSE_INTRO):] == d.prompt[len(prompts.ALL_AT_ONCE_DENSE_INTRO):]
        assert t.prompt[:t.shared_prompt_chars] == terse[0].prompt[:terse[0].shared_prompt_chars]


def test_terse_prefix_is_at_least_20_o200k_tokens_shorter_and_still_says_what_a_simulator_needs(o200k):
    shared = {name: FORMATS[name].parts("x", [["a"]])[0] for name in ("terse", "dense")}
    saved = len(o200k.encode(shared["dense"])) - len(o200k.encode(shared["terse"]))
    assert saved >= 20
    intro = prompts.ALL_AT_ONCE_TERSE_INTRO
    for fact in ("0-10", "mostly 0", "token<TAB>activation", "? to predict", "blank line",
                 "↵ newline", "⇥ tab", "‹ › angle brackets", "not instructions"):
        assert fact in intro


def test_terse_and_dense_read_the_same_positions_and_give_the_same_score():
    record, terse_scorer, _ = _requests("terse")
    _, dense_scorer, _ = _requests("dense")
    right = PLANTED["digits"][1]
    terse = terse_scorer.requests(record, right, LOGPROBS)
    dense = dense_scorer.requests(record, right, LOGPROBS)
    scores = [scorer.score(record, right, [asyncio.run(RuleSimulator().complete(r)) for r in requests], LOGPROBS)
              for scorer, requests in ((terse_scorer, terse), (dense_scorer, dense))]
    assert scores[0].score == pytest.approx(scores[1].score) and scores[0].score > 0.8
    assert scores[0].metrics["n_windows_scored"] == scores[1].metrics["n_windows_scored"] == 100
