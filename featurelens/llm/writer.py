"""Buffered, transactional writes of LLM results, so a crash loses at most one flush.

Everything a finished job produced (its rows, its calls, its cached responses, its
failure) is buffered and written together inside one transaction every ``flush_rows``
jobs or ``flush_seconds``. Rows whose tables have a deterministic key are inserted with
``INSERT OR IGNORE``, so a rerun after ``kill -9`` cannot duplicate them. Answers
already paid for are also in the response journal (:mod:`featurelens.llm.journal`)
until their flush commits; ``failures`` rows are upserted and resolved through
:mod:`featurelens.llm.failure_log`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl

from featurelens.core.store.database import Store
from featurelens.llm import failure_log
from featurelens.llm.journal import ResponseJournal

#: Tables whose rows carry a deterministic key: duplicates are dropped, never doubled.
KEYED = {"llm_cache": "cache_key", "llm_calls": "call_id", "llm_attempts": "attempt_id",
         "explanations": "explanation_id", "scores": "score_id"}
#: Write order inside a flush (the cache first: it is what a rerun needs most).
ORDER = ("llm_cache", "llm_calls", "llm_attempts", "explanations", "scores", "failures")
#: Jobs that asked no LLM (offline labels and scores) pending before a flush, at the least:
#: no paid answer waits in them, a rerun redoes them in milliseconds, and every commit has a
#: fixed cost that thousands of offline jobs a second would otherwise pay several times over.
UNASKED_ROWS = 2048


class ResultWriter:
    """Collects rows per table and writes them in bulk; :meth:`flush` commits them."""

    def __init__(self, store: Store, run_id: str | None, *, flush_rows: int = 500,
                 flush_seconds: float = 1.0, journal: ResponseJournal | None = None):
        self.store = store
        self.journal = journal
        self.rejected: set[str] = set()  #: cache keys whose answers could not be read
        self.resolved: list[tuple[str, str | None, int | None, str | None]] = []
        self.resolved_count = 0  #: failures this writer marked resolved
        self._open_failures = failure_log.open_failures(store)
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.jobs_pending = 0
        self.asked_pending = 0  #: of jobs_pending, those that asked an LLM
        self.last_flush = time.monotonic()
        self.rows_written: dict[str, int] = {}

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.pending.setdefault(table, []).append(row)

    def reject(self, keys: list[str]) -> None:
        """Drop these answers from the cache (pending or committed): a rerun asks again."""
        self.rejected.update(keys)
        if self.journal is not None:
            self.journal.rejected(keys)

    def succeeded(self, work: tuple[str, str | None, int | None, str | None]) -> None:
        """This work succeeded: its current failure, if any, is resolved at the next flush."""
        if self._open_failures:
            self.resolved.append(work)

    def job_done(self, asked: bool = True) -> None:
        """Count one finished job; its rows are all added by now. ``asked``: it asked an LLM
        (its answers count toward ``flush_rows``; a job that asked none toward
        :data:`UNASKED_ROWS`)."""
        self.jobs_pending += 1
        self.asked_pending += int(asked)

    def due(self) -> bool:
        """A flush is due: ``flush_rows`` jobs that asked an LLM, :data:`UNASKED_ROWS` jobs in
        all (at least ``flush_rows``), or ``flush_seconds`` since the last flush."""
        return (self.asked_pending >= self.flush_rows
                or self.jobs_pending >= max(self.flush_rows, UNASKED_ROWS)
                or (self.jobs_pending > 0 and time.monotonic() - self.last_flush >= self.flush_seconds))

    def flush(self, progress: dict[str, Any] | None = None) -> None:
        """Write every pending row, and the run's progress, in one transaction."""
        pending, self.pending = self.pending, {}
        rejected, self.rejected = self.rejected, set()
        resolved, self.resolved = self.resolved, []
        self.jobs_pending = self.asked_pending = 0
        self.last_flush = time.monotonic()
        if rejected and "llm_cache" in pending:
            pending["llm_cache"] = [r for r in pending["llm_cache"] if r["cache_key"] not in rejected]
        failures = pending.pop("failures", [])
        tables = [t for t in ORDER if pending.get(t)] + [t for t in pending if t not in ORDER and pending[t]]
        if not tables and progress is None and not (rejected or resolved or failures):
            return
        with self.store.transaction():
            if rejected:
                keys = sorted(rejected)
                self.store.execute(
                    f"DELETE FROM llm_cache WHERE cache_key IN ({','.join('?' * len(keys))})", keys)
            if resolved:
                self.resolved_count += failure_log.resolve(self.store, resolved)
            for table in tables:
                frame = pl.DataFrame(pending[table], infer_schema_length=None)
                key = KEYED.get(table)
                if key is not None:
                    frame = frame.unique(subset=key, keep="first", maintain_order=True)
                self.store.insert(table, frame, on_conflict="ignore" if key else "error")
                self.rows_written[table] = self.rows_written.get(table, 0) + frame.height
            if failures:
                failure_log.record_failures(self.store, failures)
                self._open_failures += len(failures)
                self.rows_written["failures"] = self.rows_written.get("failures", 0) + len(failures)
            if progress is not None and self.run_id is not None:
                self.store.execute("UPDATE runs SET progress = ? WHERE run_id = ?",
                                   [json.dumps(progress), self.run_id])
        if self.journal is not None:
            self.journal.committed()
        self.store.give_turn()  # a browser (featurelens serve) waiting for the file gets it now
