"""The ``failures`` table as a list of current problems, not a log that piles up.

A piece of work is ``(stage, dictionary_id, feature, method)``: explaining a feature with
one explainer, LLM and options, or scoring one explanation with one scorer and LLM. It
has at most one row. Failing again bumps ``attempts`` and replaces the reason; succeeding
sets ``resolved_at`` (the row stays, so how often the work failed remains visible).
Rows written before migration 0002 have no method; a success resolves them too.
"""

from __future__ import annotations

from typing import Any, Iterable

import polars as pl

from featurelens.core.store.database import Store

#: How a failure row and a piece of work are matched (NULL matches NULL).
_MATCH = ("f.stage = i.stage AND f.dictionary_id IS NOT DISTINCT FROM i.dictionary_id "
          "AND f.feature IS NOT DISTINCT FROM i.feature")
_COLUMNS = ("run_id", "stage", "dictionary_id", "feature", "method", "reason", "answer", "resolved")


def record_failures(store: Store, rows: list[dict[str, Any]]) -> None:
    """Upsert failure rows (inside the caller's transaction): new work gets a row, work
    that already has one gets ``attempts + 1`` and the new reason.

    A row with ``resolved=True`` (a success with caveats, e.g. a score that left some
    unreadable windows out) is recorded already resolved.
    """
    if not rows:
        return
    frame = pl.DataFrame([{c: r.get(c) for c in _COLUMNS} for r in rows],
                         schema={"run_id": pl.String, "stage": pl.String, "dictionary_id": pl.String,
                                 "feature": pl.Int32, "method": pl.String, "reason": pl.String,
                                 "answer": pl.String, "resolved": pl.Boolean})
    frame = frame.with_columns(pl.col("resolved").fill_null(False)).unique(
        subset=["stage", "dictionary_id", "feature", "method"], keep="last", maintain_order=True)
    view = "_incoming_failures"
    store.con.register(view, frame.to_arrow())
    try:
        match = f"{_MATCH} AND f.method IS NOT DISTINCT FROM i.method"
        store.execute(
            f"UPDATE failures AS f SET attempts = f.attempts + 1, reason = i.reason, "
            f"answer = i.answer, run_id = i.run_id, updated_at = current_timestamp, "
            f"resolved_at = CASE WHEN i.resolved THEN current_timestamp END "
            f"FROM {view} AS i WHERE {match}")
        store.execute(
            f"INSERT INTO failures (run_id, stage, dictionary_id, feature, method, reason, answer, "
            f"attempts, updated_at, resolved_at) SELECT i.run_id, i.stage, i.dictionary_id, i.feature, "
            f"i.method, i.reason, i.answer, 1, current_timestamp, "
            f"CASE WHEN i.resolved THEN current_timestamp END FROM {view} AS i "
            f"WHERE NOT EXISTS (SELECT 1 FROM failures AS f WHERE {match})")
    finally:
        store.con.unregister(view)


def resolve(store: Store, work: Iterable[tuple[str, str | None, int | None, str | None]]) -> int:
    """Mark the current failures of ``(stage, dictionary_id, feature, method)`` resolved;
    returns how many were. Also resolves pre-0002 rows (no method) of the same feature."""
    keys = list(dict.fromkeys(work))
    if not keys:
        return 0
    frame = pl.DataFrame(keys, schema={"stage": pl.String, "dictionary_id": pl.String,
                                       "feature": pl.Int32, "method": pl.String}, orient="row")
    view = "_resolved_work"
    store.con.register(view, frame.to_arrow())
    try:
        rows = store.execute(
            f"UPDATE failures AS f SET resolved_at = current_timestamp FROM {view} AS i "
            f"WHERE f.resolved_at IS NULL AND {_MATCH} "
            f"AND (f.method IS NULL OR f.method = i.method)")
    finally:
        store.con.unregister(view)
    return int(rows[0][0]) if rows else 0


def open_failures(store: Store) -> int:
    """How many failures are current (the engine skips resolving when there are none)."""
    return int(store.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL")[0][0])


def stage_summary(store: Store, stage: str, run_id: str | None, resolved: int) -> str:
    """One line for the end of a job: the stage's current failures, how many of them this
    run added or repeated, and how many this run resolved (``resolved``, counted by it)."""
    current, this_run, repeated = store.execute(
        "SELECT count(*), count(*) FILTER (WHERE run_id = ?), "
        "count(*) FILTER (WHERE run_id = ? AND attempts > 1) "
        "FROM failures WHERE stage = ? AND resolved_at IS NULL", [run_id, run_id, stage])[0]
    return (f"failures {stage}: {current:,} current ({this_run:,} from this run, {repeated:,} "
            f"of them failed before too), {resolved:,} resolved by this run")
