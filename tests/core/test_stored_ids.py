"""stored_ids(): which of a chunk's ids a rerun skips, read over the chunk's feature range."""

from __future__ import annotations

import polars as pl

from featurelens.core.store.stored_ids import stored_ids


def _scores(store, rows: list[tuple[str, int, str]]) -> None:
    store.insert("scores", pl.DataFrame({
        "score_id": [r[0] for r in rows], "explanation_id": ["e"] * len(rows),
        "dictionary_id": ["d"] * len(rows), "feature": [r[1] for r in rows],
        "scorer": [r[2] for r in rows], "llm": ["offline:none"] * len(rows),
        "score": [0.5] * len(rows), "status": ["ok"] * len(rows),
    }))


def test_only_the_asked_ids_in_range_and_matching_are_found(store) -> None:
    _scores(store, [("a", 10, "embedding"), ("b", 11, "embedding"), ("c", 12, "token-check"),
                    ("d", 500, "embedding")])
    assert stored_ids(store, "scores", "score_id", ["a", "b", "c", "x"], [10, 12]) == {"a", "b", "c"}
    assert stored_ids(store, "scores", "score_id", ["a", "b", "c"], [10, 12], {"scorer": "embedding"}) == {"a", "b"}
    # an id stored outside the chunk's feature range is not read
    assert stored_ids(store, "scores", "score_id", ["d"], [10, 12]) == set()
    assert stored_ids(store, "scores", "score_id", ["d"], [12, 500]) == {"d"}


def test_no_ids_asks_nothing(store) -> None:
    assert stored_ids(store, "scores", "score_id", [], []) == set()


def test_thousands_of_ids_in_one_chunk(store) -> None:
    _scores(store, [(f"id{i}", i, "embedding") for i in range(0, 4096, 2)])
    asked = [f"id{i}" for i in range(4096)]
    assert stored_ids(store, "scores", "score_id", asked, list(range(4096))) == {f"id{i}" for i in range(0, 4096, 2)}
