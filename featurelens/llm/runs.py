"""Labeling runs: their rows in the ``runs`` table and their life from start to finish.

The id hashes the job kind and its configuration, so running the same command again
finds the same run and resumes it rather than starting a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import TYPE_CHECKING, Any, Callable, Iterable

import featurelens
from featurelens.core.host.protocols import close_provider, loop_done
from featurelens.core.store.database import Store

if TYPE_CHECKING:
    from featurelens.core.host.protocols import LLMProvider
    from featurelens.llm.engine import EngineSettings, Job, RunStats
    from featurelens.llm.pricing import PriceTable


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


def run_labeling(store: Store, *, kind: str, config: dict[str, Any], llm: str,
                 provider: "LLMProvider | None", provider_options: dict[str, Any] | None,
                 make_jobs: Callable[[Any, str, "LLMProvider"], Iterable["Job"]],
                 total: int, desc: str, settings: "EngineSettings | None",
                 prices: "PriceTable | None",
                 build: "Callable[[], LLMProvider] | None" = None) -> "RunStats":
    """Start (or resume) a run, stream ``make_jobs(engine, run_id, provider)`` through the
    engine, and mark the run done or failed, whatever happens.

    ``provider`` is built when not given (by ``build``, else from ``llm`` and
    ``provider_options``), and then closed at the end; one passed in belongs to the caller
    (``label`` shares one client between its stages).
    """
    from featurelens.llm import journal
    from featurelens.llm.engine import Engine
    from featurelens.llm.providers import build_provider

    owned = provider is None
    if provider is None:
        provider = build() if build is not None else build_provider(llm, **(provider_options or {}))
    journal.replay(store)  # before the run is recorded: a damaged journal leaves no run behind
    run_id = start_run(store, kind, config)
    engine = Engine(store, provider, settings=settings, run_id=run_id, prices=prices)
    jobs = make_jobs(engine, run_id, provider)

    async def main() -> "RunStats":
        try:
            return await engine.run(jobs, total=total, desc=desc)
        finally:
            # a shared provider's client is closed on its own loop (loop_done), an owned one whole
            await (close_provider(provider) if owned else loop_done(provider))

    stats = None
    try:
        stats = asyncio.run(main())
    finally:
        finish_run(store, run_id, "done" if stats is not None else "failed",
                   stats.as_dict() if stats is not None else None)
    return stats
