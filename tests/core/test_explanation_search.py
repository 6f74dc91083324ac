"""Search by meaning: planted explanations, paraphrased queries, the right feature first.

Explanations are embedded with the installed all-MiniLM-L6-v2 into the store's
``explanation_embeddings`` (FLOAT[384]) and ranked by ``array_cosine_similarity``; the
same ranking is reached from ``featurelens search``, the browser's search box and SQL."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest
from synthetic_store import fill_store, serving

import featurelens
from featurelens.core.store import explanation_search

#: Planted explanations (feature i) and, per feature, two queries that say the same in
#: other words (no shared content word with the label where English allows).
PLANTED = [
    ("mentions of cats, kittens and other felines", ["feline pets", "a kitten or a cat"]),
    ("closing parentheses and brackets in source code", ["end of a bracketed expression in programs",
                                                          "the ) character that ends a call"]),
    ("numbers written as digits, especially years", ["numerals like 1984", "a four-digit date"]),
    ("words about sadness, grief and mourning", ["feeling unhappy after a loss", "sorrowful emotions"]),
    ("the start of a Python function definition (def)", ["declaring a new function in python",
                                                          "the keyword that begins a function"]),
    ("French words and phrases", ["text in the French language", "vocabulary from France"]),
    ("references to money, prices and currency", ["costs in dollars or euros", "how much something costs"]),
    ("HTML tags such as <div> and <p>", ["markup elements of a web page", "angle-bracket tags in webpages"]),
    ("names of days of the week", ["Monday, Tuesday or Friday", "weekdays"]),
    ("verbs in the past tense", ["actions that already happened, like walked", "past-tense verb forms"]),
    ("medical terms about diseases and symptoms", ["illness and its signs", "doctor vocabulary for sickness"]),
    ("the end of a sentence: full stops", ["a period that finishes a sentence", "sentence-final punctuation"]),
    ("questions, especially words like why and how", ["interrogative words", "asking something"]),
    ("sports: football, goals and matches", ["soccer games and scoring", "athletic competitions"]),
    ("weather: rain, snow and storms", ["meteorological conditions", "precipitation and bad weather"]),
    ("music, songs and instruments", ["playing the guitar or piano", "melodies and singing"]),
    ("negation words like not and never", ["saying no or denying something", "negative particles"]),
    ("cooking and recipes with ingredients", ["preparing food in a kitchen", "how to bake a cake"]),
    ("computer errors and exceptions", ["a program crashed with a stack trace", "software bugs being raised"]),
    ("family members such as mother and brother", ["relatives like parents and siblings", "kinship terms"]),
]


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("meaning") / "s.duckdb"
    with featurelens.open_store(path) as store:
        _labelled(store, [label for label, _ in PLANTED], "planted-")
    return path


def _labelled(store, texts: list[str], id_prefix: str) -> None:
    """A filled store whose only explanations are ``texts``, feature ``i`` labelled ``texts[i]``."""
    fill_store(store, n_features=len(texts))
    with store.transaction():
        store.execute("DELETE FROM scores")
        store.execute("DELETE FROM explanations")
        store.insert("explanations", pa.table({
            "explanation_id": [f"{id_prefix}{i}" for i in range(len(texts))],
            "dictionary_id": ["smollm2-l6-topk"] * len(texts),
            "feature": pa.array(range(len(texts)), pa.int32()),
            "explainer": ["manual"] * len(texts), "llm": ["human:test"] * len(texts),
            "text": texts, "options": ["{}"] * len(texts)}))


def test_paraphrases_find_the_planted_feature_first(planted_store: Path, cli) -> None:
    result = cli("search", "a kitten or a cat", "--store", planted_store, "--json", "--limit", 3)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert lines[0]["feature"] == 0 and lines[0]["similarity"] > lines[1]["similarity"]
    with featurelens.open_store(planted_store, read_only=True) as store:
        assert explanation_search.missing_count(store) == 0
        assert store.sql("SELECT typeof(embedding) AS t FROM explanation_embeddings LIMIT 1")["t"][0] == "FLOAT[384]"
        hits = 0
        queries = [(i, q) for i, (_, qs) in enumerate(PLANTED) for q in qs]
        vectors = explanation_search.query_vectors([q for _, q in queries])  # one batch
        for (feature, query), vector in zip(queries, vectors):
            top = explanation_search.search(store.execute, query, limit=1, vector=vector)
            hits += top[0]["feature"] == feature
    print(f"\nsearch by meaning: {hits}/{len(queries)} paraphrased queries found their planted feature first")
    assert hits / len(queries) >= 0.9, f"{hits}/{len(queries)} paraphrases found their feature first"


def test_sql_ranks_by_array_cosine_similarity(planted_store: Path, cli) -> None:
    """The documented SQL: the explanations closest to a given one, from the stored column."""
    sql = ("SELECT e.feature FROM explanation_embeddings v JOIN explanations e USING (explanation_id), "
           "(SELECT embedding FROM explanation_embeddings WHERE explanation_id = 'planted-1') q "
           "ORDER BY array_cosine_similarity(v.embedding, q.embedding) DESC LIMIT 1")
    cli("search", "cats", "--store", planted_store)  # embeds, if the other test did not run first
    result = cli("sql", sql, "--store", planted_store, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["feature"] == 1


def test_browser_search_box_by_meaning(planted_store: Path, cli) -> None:
    cli("search", "cats", "--store", planted_store)
    with serving(planted_store) as url:
        query = urllib.parse.urlencode({"q": "soccer games and scoring", "by": "meaning"})
        page = urllib.request.urlopen(f"{url}search?{query}", timeout=60).read().decode()
    assert "closest in meaning" in page
    first = page.index("<tbody>")
    assert "sports: football, goals and matches" in page[first:first + 600]


def test_browser_says_how_to_embed_when_nothing_is(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=3)
    with serving(path) as url:
        page = urllib.request.urlopen(f"{url}search?q=cats&by=meaning", timeout=60).read().decode()
    assert "run featurelens search" in page


def test_a_fill_embeds_each_distinct_text_once_and_resumes_a_page_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """Repeated labels (as an offline explainer writes at width) cost one embedding each;
    pages commit on their own, so a fill stopped by an error resumes without rewriting."""
    import featurelens.core.model.sentence_embedding as sentence_embedding

    texts = ["mentions of cats", "closing brackets", "mentions of cats", "digits", "closing brackets",
             "mentions of cats", "digits", "weekdays"]
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        _labelled(store, texts, "e")
        original, calls = sentence_embedding.embed, []

        def failing_second_call(batch, model_path, **options):
            calls.append(list(batch))
            if len(calls) == 2:
                raise RuntimeError("stopped")
            return original(batch, model_path, **options)

        monkeypatch.setattr(sentence_embedding, "embed", failing_second_call)
        with pytest.raises(RuntimeError):
            explanation_search.embed_missing(store, page=3, show_progress=False)
        assert explanation_search.missing_count(store) == len(texts) - 3  # the first page was kept
        assert explanation_search.embed_missing(store, page=3, show_progress=False) == len(texts) - 3
        assert explanation_search.missing_count(store) == 0
        embedded = [text for batch in calls for text in batch]
        # in text order: page 1 = 'closing brackets' x2 + 'digits'; each page embeds its distinct
        # texts not already embedded on the page before
        assert sorted(set(embedded)) == sorted(set(texts)) and len(calls[0]) == 2
        rows = store.execute("SELECT e.text, v.embedding FROM explanation_embeddings v "
                             "JOIN explanations e USING (explanation_id) ORDER BY e.explanation_id")
        alone = dict(zip(sorted(set(texts)), original(sorted(set(texts)), explanation_search.model_path())
                         .tolist()))
        for text, vector in rows:
            assert max(abs(a - b) for a, b in zip(vector, alone[text])) < 1e-5
