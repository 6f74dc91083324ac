"""Search explanations by meaning: stored sentence embeddings and cosine similarity.

Every explanation's text is embedded once with the sentence model featurelens installs
(:mod:`featurelens.core.model.sentence_embedding`, 384 numbers, unit length) into
``explanation_embeddings`` (a ``FLOAT[384]`` column). A query is embedded with the same
model and ranked in DuckDB with ``array_cosine_similarity``, so search by meaning is one
SQL statement over the store, and the same column serves hand-written SQL, e.g. the
explanations closest to a given one::

    SELECT e.dictionary_id, e.feature, e.text,
           array_cosine_similarity(v.embedding, q.embedding) AS similarity
    FROM explanation_embeddings v JOIN explanations e USING (explanation_id),
         (SELECT embedding FROM explanation_embeddings WHERE explanation_id = 'ID') q
    ORDER BY similarity DESC LIMIT 10

Filling numbers the explanations still missing a vector once, in text order, then reads
them in pages and writes each page in one transaction, so memory stays flat and an
interrupted fill resumes where it stopped; each distinct text is embedded once, however
many explanations share it.
"""

from __future__ import annotations

from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.model.sentence_embedding import DIMENSIONS, MODEL_NAME

#: Explanations written per transaction (their distinct texts embedded first).
PAGE = 2048

#: ``featurelens run --embeddings`` choices: the sentence model whose vectors this module
#: stores and searches (``local``: the installed all-MiniLM-L6-v2), or ``none`` (search
#: then embeds the explanations on its first query).
SEARCH_EMBEDDINGS: dict[str, str | None] = {"local": MODEL_NAME, "none": None}

#: The explanations without a vector, numbered in text order (the work list of one fill,
#: a temporary table of this connection): a page is a range of ``r``, read by zone maps
#: instead of joining every explanation again, and equal texts sit side by side.
TODO_SQL = ("CREATE OR REPLACE TEMP TABLE explanation_embedding_todo AS "
            "SELECT row_number() OVER (ORDER BY e.text, e.explanation_id) - 1 AS r, e.explanation_id, e.text "
            "FROM explanations e ANTI JOIN explanation_embeddings v USING (explanation_id) ORDER BY r")

SEARCH_SQL = (
    "SELECT e.dictionary_id, e.feature, e.text, e.explainer, e.llm, "
    f"array_cosine_similarity(v.embedding, ?::FLOAT[{DIMENSIONS}]) AS similarity "
    "FROM explanation_embeddings v JOIN explanations e USING (explanation_id) "
    "WHERE v.model = ? {where} ORDER BY similarity DESC, e.dictionary_id, e.feature LIMIT ? OFFSET ?")


def model_path() -> str:
    from featurelens.core.model.sentence_embedding import default_model_path

    return str(default_model_path())


def missing_count(store: Any) -> int:
    """Explanations without a stored embedding."""
    return int(store.execute("SELECT count(*) FROM explanations e LEFT JOIN explanation_embeddings v "
                             "USING (explanation_id) WHERE v.explanation_id IS NULL")[0][0])


def embed_missing(store: Any, *, path: str | None = None, page: int = PAGE, show_progress: bool = True) -> int:
    """Embed every explanation that has no vector yet; returns how many were written.

    Each distinct text is embedded once (explanations repeat at width: an offline
    explainer writes the same label for many features) through a bounded
    :class:`~featurelens.core.model.text_vectors.TextVectors` cache, and every explanation
    with that text gets its vector. Pages of ``page`` explanations are written one
    transaction each, so memory stays flat and an interrupted fill resumes where it stopped."""
    import pyarrow as pa

    from featurelens.core.model.text_vectors import TextVectors
    from featurelens.core.progress import progress

    if page < 1:
        raise FeaturelensError("embed_missing needs page >= 1; pass a positive page size.")
    total = missing_count(store)
    if total == 0:
        return 0
    cache = TextVectors(path or model_path(), capacity=page)
    done = 0
    store.execute(TODO_SQL)
    try:
        with progress(total, desc="embed explanations", unit="explanation", enabled=show_progress) as bar:
            for start in range(0, total, page):
                rows = store.execute("SELECT explanation_id, text FROM explanation_embedding_todo "
                                     "WHERE r >= ? AND r < ? ORDER BY r", [start, start + page])
                if not rows:
                    break
                vectors, index = cache.lookup([text for _, text in rows])
                if vectors.shape[1] != DIMENSIONS:
                    raise FeaturelensError(f"The sentence model gives {vectors.shape[1]} numbers per text, "
                                           f"explanation search stores {DIMENSIONS}; use the installed "
                                           f"{MODEL_NAME}.")
                table = pa.table({
                    "explanation_id": pa.array([eid for eid, _ in rows]),
                    "model": pa.array([MODEL_NAME] * len(rows)),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors[index].reshape(-1)),
                                                                   DIMENSIONS),
                })
                with store.transaction():
                    store.insert("explanation_embeddings", table, on_conflict="ignore")
                done += len(rows)
                bar.update(len(rows))
    finally:
        store.execute("DROP TABLE IF EXISTS explanation_embedding_todo")
    return done


def query_vectors(texts: list[str], path: str | None = None) -> list[list[float]]:
    """The queries' embeddings (one batch), as lists DuckDB takes for ``FLOAT[384]`` parameters."""
    from featurelens.core.model.sentence_embedding import embed

    if not texts or any(not text.strip() for text in texts):
        raise FeaturelensError("The search text is empty; describe what the feature should do, "
                               "e.g. featurelens search \"closing brackets in code\".")
    return [[float(v) for v in row] for row in embed(texts, path or model_path()).tolist()]


def query_vector(text: str, path: str | None = None) -> list[float]:
    """One query's embedding (:func:`query_vectors`)."""
    return query_vectors([text], path)[0]


def search(execute: Any, text: str, *, limit: int = 20, offset: int = 0, dictionary_id: str | None = None,
           path: str | None = None, vector: list[float] | None = None) -> list[dict[str, Any]]:
    """Explanations closest in meaning to ``text``, most similar first, from the stored
    vectors; ``execute(sql, params) -> rows`` runs on any handle (read-only included).
    ``vector``: ``text``'s embedding when the caller has it already (a batch of queries)."""
    vector = vector if vector is not None else query_vector(text, path)
    where = "AND e.dictionary_id = ?" if dictionary_id else ""
    params: list[Any] = [vector, MODEL_NAME] + ([dictionary_id] if dictionary_id else []) + [limit, offset]
    rows = execute(SEARCH_SQL.format(where=where), params)
    keys = ("dictionary_id", "feature", "text", "explainer", "llm", "similarity")
    return [dict(zip(keys, row)) for row in rows]
