"""Migration 0016: a store written with the keyed examples table opens with its rows intact
and without the key; extraction's writes keep each (feature, kind, rank) once."""

from __future__ import annotations

from pathlib import Path

import duckdb

import featurelens
from featurelens.core.store.database import migrations


def _old_store(path: Path) -> None:
    """A store as featurelens wrote it before migration 0016, with examples in it."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL "
                "DEFAULT current_timestamp, featurelens_version VARCHAR NOT NULL)")
    for name, sql in migrations():
        if name.startswith("0016"):
            break
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations (name, featurelens_version) VALUES (?, 'old')", [name])
    con.execute("INSERT INTO examples SELECT 'd', i // 3, ['top', 'quantile', 'random'][i % 3 + 1], i // 3, 'c', i, "
                "[i * 0.5, 0.0]::FLOAT[], i * 0.5, 0, NULL FROM range(30) t(i)")
    con.close()


def test_an_old_store_opens_with_its_examples_and_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    with duckdb.connect(str(path), read_only=True) as con:
        before = con.execute("SELECT * FROM examples ORDER BY sequence_id").fetchall()
        kinds = con.execute("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'examples'").fetchall()
    assert ("PRIMARY KEY",) in kinds
    with featurelens.open_store(path) as db:
        after = db.execute("SELECT * FROM examples ORDER BY sequence_id")
        kinds = db.execute("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'examples'")
        comment = db.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'examples'")[0][0]
        rank_comment = db.execute("SELECT comment FROM duckdb_columns() WHERE table_name = 'examples' "
                                  "AND column_name = 'rank'")[0][0]
    assert after == before and len(after) == 30
    assert ("PRIMARY KEY",) not in kinds and ("NOT NULL",) in kinds
    assert "unique by construction" in comment and rank_comment.startswith("0-based order")


def test_a_rewritten_extraction_keeps_each_example_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A run marked unfinished (as after a kill in the final write) writes its dictionary's
    examples again: the old rows go first, so no (feature, kind, rank) appears twice."""
    import json

    from extract_calls import extract_with

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat. A dog ran in the park. " * 60, encoding="utf-8")
    store = tmp_path / "s.duckdb"
    kwargs = dict(model=str(tiny_model_dir), hookpoint="blocks.1.hook_resid_post", corpus=str(corpus),
                  tokens=128, context=16, batch_size=2, store=store, progress=False, device="cpu")
    result = extract_with(**kwargs)
    query = "SELECT * FROM examples ORDER BY feature, kind, rank"
    with featurelens.open_store(store) as db:
        first = db.execute(query)
        db.execute("UPDATE runs SET status = 'running', progress = ? WHERE run_id = ?",
                   [json.dumps({"batches_done": 0, "checkpoint": "state-000000000.json", "seq_floor": 0}),
                    result.run_id])
    extract_with(**kwargs)
    with featurelens.open_store(store) as db:
        again = db.execute(query)
        duplicates = db.execute("SELECT count(*) FROM (SELECT dictionary_id, feature, kind, rank FROM examples "
                                "GROUP BY ALL HAVING count(*) > 1)")[0][0]
    assert len(first) > 0 and again == first and duplicates == 0
