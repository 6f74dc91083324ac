"""The embedding scorer: no LLM, AUROC of similarity; needs the optional model package."""

from __future__ import annotations

from featurelens.scorers.embedding import EmbeddingScorer, auroc
from featurelens.testing.planted_features import PLANTED, planted_records


def test_auroc_with_ties():
    assert auroc([2.0, 3.0], [1.0]) == 1.0
    assert auroc([0.0], [1.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0, 0.0]) == 0.75
    assert auroc([], [1.0]) is None


def test_right_explanation_is_closest_to_activating_windows():
    scorer = EmbeddingScorer(n_activating=8, n_random=8)
    record = planted_records(n_top=10, n_quantile=8, n_random=8)[0]
    assert scorer.requests(record, "digits") == []
    right = scorer.score(record, PLANTED["digits"][1], [])
    wrong = scorer.score(record, PLANTED["closing"][1], [])
    assert right.status == "ok" and right.score > 0.9
    assert wrong.score < right.score - 0.3
    assert len(right.details["similarities"]) == 16
