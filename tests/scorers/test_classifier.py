"""Detection and fuzzing: deterministic test sets, strict list parsing, metrics."""

from __future__ import annotations

import asyncio

import pytest

from featurelens.core.host.manager import get_registry
from featurelens.core.host.protocols import LLMResponse, ParseError
from featurelens.scorers import DetectionScorer, FuzzingScorer
from featurelens.scorers.classifier import parse_answers
from featurelens.scorers.metrics import classification
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records


def run(scorer, record, explanation):
    simulator = RuleSimulator(capabilities=frozenset())
    requests = scorer.requests(record, explanation, simulator.capabilities)
    return requests, scorer.score(record, explanation, [asyncio.run(simulator.complete(r)) for r in requests])


def test_parse_answers_is_strict_about_length():
    assert parse_answers("Sure: [1, 0, 0, 1, 1]", 5) == [1, 0, 0, 1, 1]
    assert parse_answers("[true, false]", 2) == [1, 0]
    for text in ("[1,0,1]", "no list", "[1,0,maybe]"):
        with pytest.raises(ParseError):
            parse_answers(text, 4 if text == "[1,0,1]" else 3)


def test_classification_metrics():
    m = classification([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert classification([1, 1], [1, 1])["balanced_accuracy"] is None


@pytest.mark.parametrize("cls", [DetectionScorer, FuzzingScorer])
def test_faithful_classifier_separates_right_from_wrong(cls):
    scorer = cls(adaptive=False)  # every window: this test checks the full prompt set
    for record, (name, (_, right)) in zip(planted_records(seed=2), PLANTED.items()):
        requests, result = run(scorer, record, right)
        assert len(requests) == 16  # 40 quantile + 40 random windows, 5 per prompt
        assert all(r.shared_prefix == 3 and r.messages[:3] == requests[0].messages[:3] for r in requests)
        assert result.status == "ok" and result.score > 0.9, (name, result.metrics)
        assert result.metrics["f1"] > 0.9
        for other, (_, wrong) in PLANTED.items():
            if other != name:
                _, bad = run(scorer, record, wrong)
                assert bad.score < 0.7, (cls.name, name, other, bad.metrics)


def test_fuzzing_marks_strong_tokens_and_same_count_at_random():
    record = planted_records()[0]
    items, _ = FuzzingScorer().items(record)
    activating = [text for text, label, _ in items if label]
    assert all("<<" in text for text in activating)
    negatives = [(text, w) for text, label, w in items if not label]
    assert negatives and all(text.count("<<") >= 1 for text, _ in negatives)


def test_wrong_length_answer_is_a_counted_failure():
    scorer = DetectionScorer(n_activating=5, n_random=5)
    record = planted_records()[1]
    requests = scorer.requests(record, "the word 'cat'")
    responses = [LLMResponse(text="[1,0]")] + [LLMResponse(text="[1,1,1,1,1]")] * (len(requests) - 1)
    result = scorer.score(record, "the word 'cat'", responses)
    assert result.n_parse_failures == 1
    assert result.metrics["n_windows_scored"] == 5
    assert result.details["parse_failures"] == ["the answer lists 2 values for 5 examples"]


def test_requests_are_deterministic_and_registered():
    record = planted_records()[2]
    first = [r.messages for r in FuzzingScorer().requests(record, "closing brackets")]
    assert first == [r.messages for r in FuzzingScorer().requests(record, "closing brackets")]
    assert {"simulation", "detection", "fuzzing"} <= set(get_registry().names("scorer"))


def test_scorers_declare_the_windows_they_read():
    from featurelens.scorers import EmbeddingScorer, SimulationScorer

    for scorer in (SimulationScorer(n_activating=7, n_random=3), DetectionScorer(n_activating=7, n_random=3),
                   EmbeddingScorer(n_activating=7, n_random=3)):
        assert scorer.example_kinds() == {"quantile": None, "random": 3}
        assert scorer.example_fallbacks() == {"quantile": {"top": 17}}  # only without quantile windows
