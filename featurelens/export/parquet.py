"""Parquet tables: one file per store table, streamed by DuckDB ``COPY`` (never
materialised in Python), each written to a temporary name and renamed.

With ``--dictionary`` / ``--where`` the per-feature tables (features, examples,
explanations, scores, llm_calls, failures) keep only the selected features, and
sequences and dictionaries only the rows those features refer to; the other tables
(runs, models...) are copied whole because they are small and give context.
"""

from __future__ import annotations

import os
from typing import Any

from featurelens.core.progress import progress
from featurelens.core.redaction import sql_replace_clause
from featurelens.core.store.database import Store
from featurelens.export.staging import Staging

_PER_FEATURE = ("features", "examples", "explanations", "scores", "llm_calls", "failures")
_SKIP = ("llm_cache",)  # cached raw LLM responses: large, and not results


def _filter(table: str, columns: set[str], selected: bool) -> str:
    if not selected:
        return ""
    if table in _PER_FEATURE and {"dictionary_id", "feature"} <= columns:
        return (" WHERE (dictionary_id, feature) IN "
                "(SELECT (dictionary_id, feature) FROM _selected)")
    if table == "sequences":
        return (" WHERE (corpus_id, sequence_id) IN (SELECT (x.corpus_id, x.sequence_id) FROM examples x "
                "SEMI JOIN _selected s ON s.dictionary_id = x.dictionary_id AND s.feature = x.feature)")
    if table == "dictionaries":
        return " WHERE dictionary_id IN (SELECT dictionary_id FROM _selected)"
    return ""


def write(store: Store, staging: Staging, selection_sql: str | None, params: list[Any]) -> list[str]:
    """Copy every table to ``<table>.parquet``; returns the file names."""
    selected = selection_sql is not None
    if selected:
        store.con.execute(f"CREATE TEMP TABLE _selected AS {selection_sql}", params)
    names = []
    tables = [t for t in store.tables() if t not in _SKIP and not t.startswith("_")]
    bar = progress(len(tables), desc="export parquet", unit="table")
    for table in tables:
        name = f"{table}.parquet"
        names.append(name)
        if staging.done(name):
            bar.update(1)
            continue
        columns = {r[0] for r in store.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND NOT internal", [table])}
        target = staging.path(name)
        tmp = target.with_name(f".{name}.tmp")
        where = _filter(table, columns, selected)
        replace = sql_replace_clause(store.con, table, columns)
        store.con.execute(f"COPY (SELECT *{replace} FROM {table}{where}) TO '{_quote(str(tmp))}' "
                          "(FORMAT parquet, COMPRESSION zstd)")
        os.replace(tmp, target)
        bar.update(1)
    bar.close()
    return names


def _quote(path: str) -> str:
    return path.replace("'", "''")
