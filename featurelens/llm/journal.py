"""The response journal: every paid answer is on disk before it counts as received.

The engine commits its rows to DuckDB in batches (a commit per response would cost
most of the throughput), so between two commits the answers live only in memory. The
journal closes that gap: each answer's cache entry, its ``llm_calls`` row and its
``llm_attempts`` row are appended to ``<store>.journal`` as one JSON line the moment the
answer arrives, and each attempt is noted before it is sent. A write that returned is
in the kernel's page cache, so ``kill -9`` cannot lose it (a power cut can: the journal
is not fsynced, a choice made for throughput).

When a batch of rows commits, the journal is emptied down to the attempts still in
flight. When a store is opened for labeling, :func:`replay` first puts whatever a killed
process left in the journal into the store (``INSERT OR IGNORE`` on deterministic keys,
so replaying twice changes nothing); an attempt that was sent but never answered is
recorded as ``interrupted``. A rerun therefore finds every received answer in the cache
and sends none of them again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from featurelens.core.errors import StoreError
from featurelens.core.store.database import Store
from featurelens.core.store.disk_full import is_disk_full

#: Money tables a journal line can hold, with their deterministic keys.
KEYS = {"llm_cache": "cache_key", "llm_calls": "call_id", "llm_attempts": "attempt_id"}


def journal_path(store: Store) -> Path | None:
    """Where the store's journal lives; ``None`` for an in-memory store (nothing is durable)."""
    path = getattr(store, "path", None)
    if path is None or str(path) in ("", ":memory:"):
        return None
    return Path(f"{path}.journal")


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode("utf-8")


class ResponseJournal:
    """Append-only JSON lines beside the store; see the module docstring."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fd: int | None = None
        self._open: dict[str, dict[str, Any]] = {}  #: attempt_id -> attempt row, sent, no answer yet
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _write(self, record: dict[str, Any]) -> None:
        if self._fd is not None:
            os.write(self._fd, _line(record))

    def sent(self, attempt: dict[str, Any]) -> None:
        """Note an attempt before its request goes out (``interrupted`` if nothing follows)."""
        self._open[attempt["attempt_id"]] = attempt
        self._write({"sent": attempt})

    def ended(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Make an attempt's outcome durable: ``{table: [row, ...]}`` of the money tables."""
        for row in rows.get("llm_attempts", ()):
            self._open.pop(row["attempt_id"], None)
        self._write({"rows": rows})

    def rejected(self, keys: list[str]) -> None:
        """These cached answers could not be read: a replay must not restore them."""
        self._write({"rejected": keys})

    def committed(self) -> None:
        """Everything written so far is in the store: keep only the attempts in flight.

        The new content is written beside the journal and renamed over it, so a kill at
        any moment leaves either the old journal or the new one, never a torn one.
        """
        if self._fd is None or self.path is None:
            return
        fresh = self.path.with_name(self.path.name + ".new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        if self._open:
            os.write(fd, b"".join(_line({"sent": a}) for a in self._open.values()))
        os.replace(fresh, self.path)
        os.close(self._fd)
        self._fd = fd

    def close(self) -> None:
        """Close; an empty journal (everything committed) is removed, so none lingers."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self.path is not None and self.path.exists() and self.path.stat().st_size == 0:
                self.path.unlink()


def _damaged(path: Path, line: int | None, problem: str) -> StoreError:
    where = f"line {line}: " if line else ""
    return StoreError(
        f"The response journal {path} cannot be replayed ({where}{problem}); it holds the "
        "answers a killed run received and featurelens writes it alone. Move it aside "
        f"(mv {path} {path}.bad) and run the same command again to go on without those answers.")


def _checked(path: Path, line: int, record: Any) -> dict[str, Any]:
    """``record`` when it has the shape :class:`ResponseJournal` writes, else a clear error."""
    def keyed(row: Any, key: str) -> bool:
        return isinstance(row, dict) and isinstance(row.get(key), str)

    if not isinstance(record, dict):
        raise _damaged(path, line, "not a journal record")
    if "sent" in record and not keyed(record["sent"], "attempt_id"):
        raise _damaged(path, line, "a sent attempt without its attempt_id")
    if "rows" in record:
        rows = record["rows"]
        if not isinstance(rows, dict) or not all(isinstance(v, list) for v in rows.values()):
            raise _damaged(path, line, "rows that are not lists per table")
        for table, key in KEYS.items():
            if not all(keyed(row, key) for row in rows.get(table, ())):
                raise _damaged(path, line, f"a {table} row without its {key}")
    if "rejected" in record and not (isinstance(record["rejected"], list)
                                     and all(isinstance(k, str) for k in record["rejected"])):
        raise _damaged(path, line, "rejected cache keys that are not a list of strings")
    return record


def _read(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                break  # a line cut short by the kill: its answer was not yet counted
            try:
                record = json.loads(raw)
            except ValueError:  # whole lines are written at once: a complete bad one is damage
                raise _damaged(path, line, "not JSON") from None
            records.append(_checked(path, line, record))
    return records


def replay(store: Store) -> int:
    """Move what a killed process left in the journal into the store; returns the answers
    restored. Safe to call on every start: an empty or missing journal does nothing."""
    path = journal_path(store)
    if path is None:
        return 0
    stale = path.with_name(path.name + ".new")
    if stale.exists():
        stale.unlink()  # a compaction that did not reach its rename: the journal is intact
    if not path.exists() or path.stat().st_size == 0:
        return 0
    tables: dict[str, list[dict[str, Any]]] = {t: [] for t in KEYS}
    sent: dict[str, dict[str, Any]] = {}
    rejected: set[str] = set()
    for record in _read(path):
        if "sent" in record:
            sent[record["sent"]["attempt_id"]] = record["sent"]
        elif "rows" in record:
            for table, rows in record["rows"].items():
                if table in tables:
                    tables[table].extend(rows)
            for row in record["rows"].get("llm_attempts", ()):
                sent.pop(row["attempt_id"], None)
        elif "rejected" in record:
            rejected.update(record["rejected"])
    for attempt in sent.values():  # sent, never answered: the process died waiting
        tables["llm_attempts"].append({**attempt, "outcome": "interrupted",
                                       "error": "the process stopped before an answer arrived"})
    tables["llm_cache"] = [r for r in tables["llm_cache"] if r["cache_key"] not in rejected]
    try:
        with store.transaction():
            for table, rows in tables.items():
                if rows:
                    frame = pl.DataFrame(rows, infer_schema_length=None).unique(
                        subset=KEYS[table], keep="last", maintain_order=True)
                    store.insert(table, frame, on_conflict="ignore")
            if rejected:
                keys = sorted(rejected)
                store.execute(f"DELETE FROM llm_cache WHERE cache_key IN ({','.join('?' * len(keys))})", keys)
    except (StoreError, pl.exceptions.PolarsError, TypeError, ValueError) as error:
        if is_disk_full(error):
            raise
        raise _damaged(path, None, " ".join(str(error).split())[:200]) from None
    path.unlink()
    return len(tables["llm_cache"])
