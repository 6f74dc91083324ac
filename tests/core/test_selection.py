"""Streaming feature records out of the store: selection, pagination, example contents."""

from __future__ import annotations

import pytest
from llm_fixtures import WORDS, fill

from featurelens.core.errors import FeaturelensError
from featurelens.core.selection import (
    Selection,
    count_features,
    feature_keys,
    load_records,
    stream_records,
)


def test_pages_cover_the_selection_once_in_order_across_dictionaries(store):
    fill(store, 7, dictionary_id="a")
    fill(store, 5, dictionary_id="b")
    pages = list(feature_keys(store, Selection(), chunk_size=3))
    flat = [k for page in pages for k in page]
    assert flat == [("a", f) for f in range(7)] + [("b", f) for f in range(5)]
    assert max(len(p) for p in pages) == 3
    limited = [k for p in feature_keys(store, Selection(where="density > 0.015", limit=4), 3) for k in p]
    assert limited == [("a", 2), ("a", 3), ("a", 4), ("a", 5)]
    assert count_features(store, Selection(where="density > 0.015", limit=4)) == 4
    assert count_features(store, Selection(dictionary_id="b")) == 5


def test_records_join_examples_to_their_tokens(store):
    fill(store, 4, examples_per_feature=3, seq_len=8)
    record = load_records(store, [("d1", 2)])[0]
    assert (record.dictionary_id, record.feature, record.max_activation) == ("d1", 2, 3.0)
    assert [e.kind for e in record.examples] == ["top"] * 3
    tokens = store.execute("SELECT token_strs FROM sequences WHERE sequence_id = 2")[0][0]
    first = record.examples[0]
    assert first.tokens == tokens and len(first.activations) == 8
    assert first.activations[2] == 3.0 and first.max_activation == 3.0
    assert all(t in WORDS for t in first.tokens)
    # examples sharing a sequence get equal but independent token lists
    both = load_records(store, [("d1", 2), ("d1", 3)])
    same_seq, other = both[0].examples[1], both[1].examples[0]  # both sequence 3
    assert other.tokens == same_seq.tokens and other.tokens is not same_seq.tokens


def test_streamed_chunks_hold_every_record(store):
    fill(store, 10)
    chunks = list(stream_records(store, Selection(), chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [r.feature for c in chunks for r in c] == list(range(10))


def test_bad_selection_is_one_sentence(store):
    fill(store, 2)
    with pytest.raises(FeaturelensError, match="cannot be parsed|not valid SQL"):
        count_features(store, Selection(where="nonsense >"))
    with pytest.raises(FeaturelensError, match="more than one SQL statement"):
        count_features(store, Selection(where="1=1); DROP TABLE features; SELECT (1"))
    assert "features" in store.tables()


def test_only_the_windows_asked_for_are_loaded(store):
    fill(store, 3, examples_per_feature=4)
    store.execute("UPDATE examples SET kind = 'random' WHERE rank = 3")
    everything = load_records(store, [("d1", 1)])[0]
    assert [e.kind for e in everything.examples] == ["random", "top", "top", "top"]
    two_top = load_records(store, [("d1", 1)], {"top": 2})[0]
    assert [e.kind for e in two_top.examples] == ["top", "top"]
    assert two_top.examples[0].activations == everything.examples[1].activations
    assert [e.kind for e in load_records(store, [("d1", 1)], {"random": None})[0].examples] == ["random"]
    assert load_records(store, [("d1", 1)], {})[0].examples == []


def test_fallback_windows_are_loaded_only_for_features_lacking_the_kind(store):
    from featurelens.scorers.scoring_windows import test_windows
    from featurelens.scorers.token_check import TokenCheckScorer

    fill(store, 4, examples_per_feature=6)
    # features 0 and 2 get quantile windows; 1 and 3 have only top ones (and a random one)
    store.execute("UPDATE examples SET kind = 'quantile', quantile = rank WHERE feature IN (0, 2) AND rank < 3")
    store.execute("UPDATE examples SET kind = 'random', rank = 0 WHERE rank = 5")
    keys = [("d1", f) for f in range(4)]
    kinds, fallbacks = {"quantile": None, "random": 2}, {"quantile": {"top": 2}}
    loaded = load_records(store, keys, kinds, fallbacks=fallbacks)
    assert [[e.kind for e in r.examples] for r in loaded] == [
        ["quantile"] * 3 + ["random"], ["random", "top", "top"],
        ["quantile"] * 3 + ["random"], ["random", "top", "top"]]
    # the fallback's windows are the ones a plain read of that kind gives, in kind then rank order
    assert [e.activations for e in loaded[1].examples] == [
        e.activations for e in load_records(store, [("d1", 1)], {"random": 2, "top": 2})[0].examples]
    assert load_records(store, keys[:1], kinds, fallbacks=fallbacks)[0].examples == loaded[0].examples
    # a scorer tests on the same windows as when every kind is loaded
    scorer = TokenCheckScorer(n_activating=2, n_random=2)
    everything = load_records(store, keys)
    fast = load_records(store, keys, scorer.example_kinds(), fallbacks=scorer.example_fallbacks())
    for full, lean in zip(everything, fast, strict=True):
        plain = test_windows(full, 2, 2, 32, scorer.name)
        assert test_windows(lean, 2, 2, 32, scorer.name) == plain
        assert scorer.score(lean, '" cat"', []) == scorer.score(full, '" cat"', [])


def test_explain_loads_only_what_the_explainer_reads(monkeypatch, store):
    from llm_fixtures import EchoExplainer, ScriptedProvider, use_test_explainer

    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings

    seen = []
    original = EchoExplainer.requests

    def requests(self, record):
        seen.append(len(record.examples))
        return original(self, record)

    monkeypatch.setattr(EchoExplainer, "example_kinds", lambda self: {"top": 1}, raising=False)
    monkeypatch.setattr(EchoExplainer, "requests", requests)
    use_test_explainer(monkeypatch)
    fill(store, 4, examples_per_feature=3)
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini", "echo"),
                             provider=ScriptedProvider(), settings=EngineSettings(progress=False))
    assert stats.succeeded == 4 and seen == [1, 1, 1, 1]
