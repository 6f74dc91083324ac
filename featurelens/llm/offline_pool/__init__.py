"""Offline labeling over the machine's cores: worker processes label, this process writes.

An explainer or scorer that needs no LLM (token-lookup, token-check) spends its time in
Python on each feature's windows, one core per process. The store has one writer, so the
workers never open it: this process reads each page of records as Arrow (the queries are
DuckDB's, cheap), works out which jobs are left, and sends the page to a worker
(:mod:`.messages`: JSON and Arrow IPC bytes, no pickles); the worker builds the records,
runs every job's finish with the component it built from the run's config
(:mod:`.worker`), and sends the rows back. The engine then completes the jobs here as if
they had been finished here: same rows, same failures, same counters, written in the same
transactions, so resuming after a kill is unchanged (work a worker did but this process
had not written is done again).

Pages are handed out in turn and answered in order, at most two waiting per worker, so
memory stays flat. Workers are fresh interpreters (about a second each to start: Python,
DuckDB and the plugins imported again; the parent's script is never run again, so a
notebook or an unguarded script can use them), so a stage uses them only from
:data:`MIN_FEATURES` features, unless asked (``--processes``); a component they cannot
build the same way (one registered in this process only, options that are not JSON, one
that reads the store itself) runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from typing import Any, Callable, Iterable, Iterator, TypeVar

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import needs_llm
from featurelens.core.selection import RecordTables, Selection, SequenceTokens, feature_keys, fetch_tables
from featurelens.core.store.database import Store
from featurelens.llm.offline_pool.messages import Pipe, decode, encode, pack

__all__ = ["MAX_PROCESSES", "MIN_FEATURES", "OfflinePool", "PoolUnavailable", "cores", "pool_processes", "store_pages"]

#: Items a stage needs before it starts workers by itself (at 2,000-3,000 features a second a
#: core, a worker's start is a few percent of the work).
MIN_FEATURES = 20_000
#: Most workers a stage starts by itself.
MAX_PROCESSES = 8
#: Seconds a worker may take to import featurelens and build the component.
START_SECONDS = 120.0
#: Bytes each pipe holds where the system allows it (Linux's default most for a user).
PIPE_BYTES = 1 << 20

C = TypeVar("C")


class PoolUnavailable(Exception):
    """The workers could not build the component; the stage runs in this process instead."""


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pool_processes(component: Any, kind: str, name: str, config: dict[str, Any], items: int,
                   requested: int | None = None) -> int:
    """Workers for a stage of ``component`` (the ``kind`` ``name`` of the registry) over
    ``items``: ``requested`` when given, else one per core from :data:`MIN_FEATURES` items;
    1 (no workers) whenever the component cannot run in one: it needs an LLM, was not
    registered by a built-in or an installed plugin, or ``config`` does not survive JSON.
    (What else keeps a component in this process is its stage's to say: ``in_workers``.)"""
    wanted = requested if requested is not None else (min(cores(), MAX_PROCESSES) if items >= MIN_FEATURES else 1)
    if wanted <= 1 or needs_llm(component):
        return 1
    if not _importable(kind, name):
        return 1
    try:
        if json.loads(json.dumps(config)) != config:
            return 1
    except (TypeError, ValueError):
        return 1
    return wanted


def _importable(kind: str, name: str) -> bool:
    """Whether a fresh process finds the same component: a built-in, or an installed plugin's."""
    from featurelens.core.host.manager import get_host

    host = get_host()
    try:
        component = host.registry.get(kind, name)
    except Exception:  # noqa: BLE001 - not found here: no workers either
        return False
    info = host.infos.get(component.plugin)
    return info is not None and (info.builtin or info.package is not None)


def store_pages(store: Store, selection: Selection, chunk_size: int, kinds: Any, fallbacks: Any,
                jobs_left: Callable[[list[tuple[str, int]]], list[list[Any]]]
                ) -> Iterator[tuple[list[list[Any]], dict[str, Any], RecordTables]]:
    """The pages :meth:`OfflinePool.answers` takes, read from ``store``: for each page of the
    selection's keys, the jobs ``jobs_left(keys)`` says are left (a list each, the feature's
    dictionary and index first), with the record tables of the features they need (read as
    :func:`~featurelens.core.selection.load_records` would; ``kinds``, ``fallbacks``: the
    component's windows). A page with nothing left is not read or sent."""
    tokens = SequenceTokens()
    for keys in feature_keys(store, selection, chunk_size):
        jobs = jobs_left(keys)
        if jobs:
            needed = list(dict.fromkeys((d, f) for d, f, *_ in jobs))
            yield jobs, {"keys": needed, "jobs": jobs}, fetch_tables(store, needed, kinds, tokens, fallbacks)


class OfflinePool:
    """Worker processes answering a stage's pages of jobs (a context manager: closing it
    ends them)."""

    def __init__(self, pages: str, config: dict[str, Any], run_id: str | None,
                 capabilities: Iterable[str], processes: int):
        """``pages``: the stage's page answerer as ``module:class`` (built in each worker with
        ``config``, ``run_id`` and ``capabilities``; :class:`.worker.PageAnswers`)."""
        stage = encode({"pages": pages, "config": config, "run_id": run_id, "capabilities": sorted(capabilities)})
        self.workers: list[tuple[subprocess.Popen[bytes], Pipe]] = []
        try:
            for _ in range(processes):
                try:
                    self.workers.append(_start())
                    self.workers[-1][1].send_bytes(stage)
                except (OSError, ValueError) as error:  # no such interpreter, no pipes to pass (not POSIX)
                    raise PoolUnavailable(f"a worker could not be started ({error})") from None
            for process, conn in self.workers:
                if not conn.poll(START_SECONDS):
                    raise PoolUnavailable(f"a worker took over {START_SECONDS:.0f} s to start")
                try:
                    reply = self._receive(process, conn)
                except FeaturelensError as error:  # it ended before saying it was ready
                    raise PoolUnavailable(str(error)) from None
                if "error" in reply:
                    raise PoolUnavailable(reply["error"])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "OfflinePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answers(self, pages: Iterable[tuple[C, dict[str, Any], RecordTables]]
                ) -> Iterator[tuple[C, list[dict[str, Any] | None]]]:
        """``(context, results)`` for each ``(context, header, tables)`` page, in order: one
        result per job of ``header["jobs"]``."""
        waiting: deque[tuple[C, int]] = deque()
        turn = 0
        for context, header, tables in pages:
            if len(waiting) >= 2 * len(self.workers):
                yield self._result(*waiting.popleft())
            index = turn % len(self.workers)
            turn += 1
            process, conn = self.workers[index]
            try:
                conn.send_bytes(pack(header, tables))
            except (BrokenPipeError, EOFError, OSError):
                raise self._stopped(process) from None
            waiting.append((context, index))
        while waiting:
            yield self._result(*waiting.popleft())

    def _result(self, context: C, index: int) -> tuple[C, list[dict[str, Any] | None]]:
        process, conn = self.workers[index]
        reply = self._receive(process, conn)
        if "fatal" in reply:
            raise FeaturelensError(f"An offline labeling worker stopped the stage: {reply['fatal']}")
        return context, reply["results"]

    def _receive(self, process: Any, conn: Any) -> dict[str, Any]:
        try:
            return decode(conn.recv_bytes())
        except (EOFError, OSError):
            raise self._stopped(process) from None

    @staticmethod
    def _stopped(process: "subprocess.Popen[bytes]") -> FeaturelensError:
        try:
            code = process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        return FeaturelensError(
            f"An offline labeling worker process ended (exit code {code}); what was written is "
            "kept: run the command again to resume, or pass --processes 1.")

    def close(self) -> None:
        """End the workers: their pipes closed, then a few seconds to exit, then killed."""
        for _, conn in self.workers:
            conn.close()
        for process, _ in self.workers:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers = []


def _start() -> "tuple[subprocess.Popen[bytes], Pipe]":
    """One worker process and the pipe to it. It runs this interpreter on the worker module
    with this process's import path, so it finds featurelens and the plugins this process
    finds; its standard output goes to standard error (a plugin that prints cannot garble
    the pipes), and it holds no other descriptor of this process."""
    to_worker_read, to_worker_write = _pipe()
    from_worker_read, from_worker_write = _pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "featurelens.llm.offline_pool.worker", str(to_worker_read), str(from_worker_write)],
            pass_fds=(to_worker_read, from_worker_write), stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno()
            if _has_fileno(sys.stderr) else subprocess.DEVNULL, env=env)
    except BaseException:
        for fd in (to_worker_read, to_worker_write, from_worker_read, from_worker_write):
            os.close(fd)
        raise
    os.close(to_worker_read)
    os.close(from_worker_write)
    return process, Pipe(from_worker_read, to_worker_write)


def _pipe() -> tuple[int, int]:
    """A pipe holding a megabyte where the system allows it (Linux: ``F_SETPIPE_SZ``), so a
    page of a few MB crosses in a few reads: each read waits for the worker's interpreter
    lock, which its labeling thread holds between switches."""
    read_fd, write_fd = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        pass  # the system's default size: slower, not wrong
    return read_fd, write_fd


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False
