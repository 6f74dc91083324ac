"""Buffered, transactional writes of LLM results, so a crash loses at most one flush.

Everything a finished job produced (its rows, its calls, its cached responses, its
failure) is buffered and written together inside one transaction every ``flush_rows``
jobs or ``flush_seconds``. Rows whose tables have a deterministic key are inserted with
``INSERT OR IGNORE``, so a rerun after ``kill -9`` cannot duplicate them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl

from featurelens.core.store import Store

#: Tables whose rows carry a deterministic key: duplicates are dropped, never doubled.
KEYED = {"llm_cache": "cache_key", "explanations": "explanation_id", "scores": "score_id"}
#: Write order inside a flush (the cache first: it is what a rerun needs most).
ORDER = ("llm_cache", "llm_calls", "explanations", "scores", "failures")


class ResultWriter:
    """Collects rows per table and writes them in bulk; :meth:`flush` commits them."""

    def __init__(self, store: Store, run_id: str | None, *, flush_rows: int = 500,
                 flush_seconds: float = 1.0):
        self.store = store
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.jobs_pending = 0
        self.last_flush = time.monotonic()
        self.rows_written: dict[str, int] = {}

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.pending.setdefault(table, []).append(row)

    def job_done(self) -> None:
        """Count one finished job; its rows are all added by now."""
        self.jobs_pending += 1

    def due(self) -> bool:
        return self.jobs_pending >= self.flush_rows or (
            self.jobs_pending > 0 and time.monotonic() - self.last_flush >= self.flush_seconds)

    def flush(self, progress: dict[str, Any] | None = None) -> None:
        """Write every pending row, and the run's progress, in one transaction."""
        pending, self.pending = self.pending, {}
        self.jobs_pending = 0
        self.last_flush = time.monotonic()
        tables = [t for t in ORDER if t in pending] + [t for t in pending if t not in ORDER]
        if not tables and progress is None:
            return
        with self.store.transaction():
            for table in tables:
                frame = pl.DataFrame(pending[table], infer_schema_length=None)
                key = KEYED.get(table)
                if key is not None:
                    frame = frame.unique(subset=key, keep="first", maintain_order=True)
                self.store.insert(table, frame, on_conflict="ignore" if key else "error")
                self.rows_written[table] = self.rows_written.get(table, 0) + frame.height
            if progress is not None and self.run_id is not None:
                self.store.execute("UPDATE runs SET progress = ? WHERE run_id = ?",
                                   [json.dumps(progress), self.run_id])
        self.store.give_turn()  # a browser (featurelens serve) waiting for the file gets it now
