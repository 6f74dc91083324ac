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


def test_a_prepared_chunk_scores_as_each_feature_alone(monkeypatch):
    import featurelens.core.model.sentence_embedding as module

    records = planted_records(n_top=10, n_quantile=8, n_random=8)
    pairs = [(record, PLANTED["digits"][1]) for record in records]
    alone = [EmbeddingScorer(n_activating=8, n_random=8).score(r, text, []) for r, text in pairs]
    calls = []
    original = module.embed
    monkeypatch.setattr(module, "embed", lambda texts, path, **kw: calls.append(len(texts)) or original(texts, path, **kw))
    scorer = EmbeddingScorer(n_activating=8, n_random=8)
    scorer.prepare_chunk(pairs)
    together = [scorer.score(r, text, []) for r, text in pairs]
    assert len(calls) == 1  # the whole chunk in one call, nothing embedded while scoring
    # the chunk's texts repeat (one explanation, windows shared by features): each distinct once
    assert calls[0] == len(scorer.vectors()) < sum(1 + r["n_windows"] for r in (t.metrics for t in together))
    scorer.prepare_chunk(pairs)
    again = [scorer.score(r, text, []) for r, text in pairs]
    assert len(calls) == 1  # a second chunk of the same texts reads the cache
    assert [a.score for a in again] == [t.score for t in together]
    for a, b in zip(alone, together, strict=True):
        assert a.status == b.status and a.details["labels"] == b.details["labels"]
        assert abs(a.score - b.score) < 1e-6
        assert max(abs(x - y) for x, y in zip(a.details["similarities"], b.details["similarities"])) <= 1e-4
