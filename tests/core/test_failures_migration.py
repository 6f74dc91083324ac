"""Migration 0002 collapses the failure rows that reruns piled up (issue 10, item 5)."""

from __future__ import annotations

import duckdb

import featurelens
from featurelens.core.store.database import migrations


def test_old_duplicate_failures_collapse_to_one_row_with_an_attempt_count(store_path):
    name, sql = migrations()[0]
    con = duckdb.connect(str(store_path))
    con.execute(sql)
    con.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL "
                "DEFAULT current_timestamp, featurelens_version VARCHAR NOT NULL)")
    con.execute("INSERT INTO schema_migrations (name, featurelens_version) VALUES (?, '0.1.0')", [name])
    for i, reason in enumerate(["first", "second", "latest"]):
        con.execute("INSERT INTO failures (run_id, stage, dictionary_id, feature, reason, created_at) "
                    "VALUES (?, 'explain', 'd', 7, ?, TIMESTAMP '2026-01-01' + INTERVAL (?) HOUR)",
                    [f"r{i}", reason, i])
    con.execute("INSERT INTO failures (run_id, stage, dictionary_id, feature, reason) "
                "VALUES ('r0', 'explain', 'd', 8, 'other')")
    con.close()
    with featurelens.open_store(store_path) as store:
        rows = store.execute("SELECT feature, attempts, reason, run_id, resolved_at FROM failures ORDER BY feature")
    assert rows == [(7, 3, "latest", "r2", None), (8, 1, "other", "r0", None)]
