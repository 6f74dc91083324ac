"""Rows of the ``runs`` table for labeling jobs: one stable id per configuration.

The id hashes the job kind and its configuration, so running the same command again
finds the same run and resumes it rather than starting a new one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import featurelens
from featurelens.core.store import Store


def run_id_for(kind: str, config: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **config}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def start_run(store: Store, kind: str, config: dict[str, Any]) -> str:
    """Create (or reopen) the run of ``kind`` with ``config``; returns its id."""
    run_id = run_id_for(kind, config)
    with store.transaction():
        store.execute(
            "INSERT OR IGNORE INTO runs (run_id, kind, config, status, featurelens_version) "
            "VALUES (?, ?, ?, 'running', ?)",
            [run_id, kind, json.dumps(config, sort_keys=True, default=str), featurelens.__version__])
        store.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?",
                      [run_id])
    return run_id


def finish_run(store: Store, run_id: str, status: str, progress: dict[str, Any] | None = None) -> None:
    """Mark the run ``done`` or ``failed`` with its final counters."""
    store.execute(
        "UPDATE runs SET status = ?, finished_at = current_timestamp, "
        "progress = coalesce(?, progress) WHERE run_id = ?",
        [status, json.dumps(progress) if progress is not None else None, run_id])


def run_config(store: Store, run_id: str) -> tuple[str, dict[str, Any]] | None:
    """``(kind, config)`` of a stored run, or ``None``."""
    rows = store.execute("SELECT kind, CAST(config AS VARCHAR) FROM runs WHERE run_id = ?", [run_id])
    return (rows[0][0], json.loads(rows[0][1])) if rows else None
