"""Exports spread over the machine's cores: one process per core, each writing whole files.

A feature's files depend only on the store, so batches of features are independent: each
worker process opens the store read-only itself (DuckDB lets any number of processes read
a file) and writes its batches' files through the same :class:`Staging` (each file whole,
or a chunk of files and then its marker); the parent only hands out batches and counts
progress. Resuming is unchanged (the parent skips batches already written before handing
any out), and an error in a worker is raised in the parent as it was raised there.

Workers are started fresh (``spawn``): a forked child would inherit the parent's DuckDB
instance and its threads half-alive. Starting one costs about a second (Python, DuckDB and
featurelens imported again), so an export uses workers only when it has at least
:data:`MIN_FEATURES` features, where that second is a small part of the work.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable

from featurelens.browser.queries import BrowserData

#: Features an export needs before it starts worker processes (at about 2,000 features a
#: second per core, the second a worker takes to start is under a tenth of the work).
MIN_FEATURES = 20_000

#: Most worker processes an export starts.
MAX_PROCESSES = 8

#: The store each worker opened (one per process).
_data: BrowserData | None = None


def processes_for(n_features: int, requested: int | None = None) -> int:
    """Worker processes for an export of ``n_features``: ``requested`` when given, else one
    per available core (at most :data:`MAX_PROCESSES`) when the export is large enough to
    repay their start, else 1 (the export runs in this process)."""
    if requested is not None:
        return max(1, requested)
    if n_features < MIN_FEATURES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES))


def _open(path: str) -> None:
    global _data
    _data = BrowserData(path)


def store() -> BrowserData:
    """The store this worker process reads."""
    if _data is None:
        raise RuntimeError("featurelens.export.workers.store() is for worker processes started by run()")
    return _data


def run(path: Path, work: Callable[..., int], tasks: Iterable[tuple[Any, ...]], processes: int,
        done: Callable[[int], None]) -> None:
    """Call ``work(*task)`` for every task in ``processes`` worker processes (``work`` is a
    module-level function reading the store through :func:`store`; it returns the features
    it wrote), calling ``done(features)`` here as each finishes. At most two tasks per
    worker wait in line, so the tasks are made as they are needed."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_open, initargs=(str(path),)) as pool:
        pending: set[Future[int]] = set()
        try:
            for task in tasks:
                if len(pending) >= 2 * processes:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        done(future.result())
                pending.add(pool.submit(work, *task))
            for future in pending:
                done(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
