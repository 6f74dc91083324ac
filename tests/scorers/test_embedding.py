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


def test_stored_search_vectors_are_read_not_embedded_again(tmp_path, monkeypatch):
    """After search has embedded a store's explanations, the scorer embeds only windows,
    and its scores equal those of a store without stored vectors."""
    import shutil

    import featurelens
    import featurelens.core.model.sentence_embedding as module
    from featurelens.core.store import explanation_search
    from featurelens.scorers.score_jobs import ScoreSpec, score_features
    from synthetic_store import fill_store

    plain_store, searched = tmp_path / "plain.duckdb", tmp_path / "searched.duckdb"
    with featurelens.open_store(plain_store) as store:
        fill_store(store, n_features=12, n_quantile=4, n_random=4)
    shutil.copy(plain_store, searched)
    with featurelens.open_store(searched) as store:
        assert explanation_search.embed_missing(store, show_progress=False) > 0
        explanations = {text for (text,) in store.execute("SELECT text FROM explanations")}

    embedded: list[str] = []
    original = module.embed
    monkeypatch.setattr(module, "embed", lambda texts, path, **kw: embedded.extend(texts) or original(texts, path, **kw))
    spec = ScoreSpec("offline:none", "embedding", (("n_activating", 4), ("n_random", 4)))
    scores = {}
    for path in (plain_store, searched):
        embedded.clear()
        with featurelens.open_store(path) as store:
            score_features(store, spec)
            scores[path] = store.execute("SELECT feature, explanation_id, score FROM scores ORDER BY ALL")
        if path == searched:
            assert embedded and not set(embedded) & explanations  # only windows went to the model
        else:
            assert set(embedded) & explanations
    assert len(scores[searched]) == len(scores[plain_store]) > 0
    for (f1, e1, s1), (f2, e2, s2) in zip(scores[plain_store], scores[searched], strict=True):
        assert (f1, e1) == (f2, e2) and (s1 is None) == (s2 is None)
        assert s1 is None or abs(s1 - s2) < 1e-6
