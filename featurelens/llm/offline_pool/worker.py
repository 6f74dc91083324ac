"""An offline labeling worker process: builds the stage's component once, then answers pages.

Started by :class:`~featurelens.llm.offline_pool.OfflinePool` as
``python -m featurelens.llm.offline_pool.worker READ_FD WRITE_FD`` (a fresh interpreter: it
imports featurelens and its plugins itself and never runs the parent's script), it reads
the stage's page answerer (``module:class``) and recorded config as its first message,
builds the explainer or scorer,
and says it is ready (or why it could not be). Then, for each page: build the records from
the page's tables (:func:`featurelens.core.selection.build_records`), let the stage's page
answerer run every job's finish, send back the results. A thread reads pages as they come,
so the parent never waits on a full pipe while this process is busy sending; when the
parent's end closes (the job ended, or the parent was killed) the process exits.
"""

from __future__ import annotations

import importlib
import json
import queue
import signal
import threading
from typing import Any, Protocol

from featurelens.core.gc_pause import gc_paused
from featurelens.core.host.protocols import FeatureRecord
from featurelens.core.selection import SequenceTokens, build_records
from featurelens.llm.offline_pool.messages import Pipe, encode, unpack


class PageAnswers(Protocol):
    """What a labeling stage runs in a worker: its component, built from the run's config."""

    width: int | None  #: the component's ``example_width``: windows are cut as records are built

    def answer(self, jobs: list[list[Any]], records: list[FeatureRecord]) -> list[dict[str, Any] | None]:
        """One result per job (:func:`~featurelens.llm.offline_pool.messages.outcome`)."""


def _answers(pages: str, config: dict[str, Any], run_id: str | None, capabilities: frozenset[str]) -> PageAnswers:
    """The stage's page answerer, named ``module:class`` by the stage itself (this layer does
    not know the stages above it; only featurelens's own modules are loaded this way)."""
    module, _, name = pages.partition(":")
    if not module.startswith("featurelens.") or not name.isidentifier():
        raise ValueError(f"{pages!r} is not a featurelens page answerer")
    return getattr(importlib.import_module(module), name)(config, run_id, capabilities)


def serve(conn: Pipe) -> None:
    """The worker's whole life: the stage from the first message, then its pages."""
    try:
        stage = json.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    try:
        answers = _answers(stage["pages"], stage["config"], stage["run_id"], frozenset(stage["capabilities"]))
    except Exception as error:  # noqa: BLE001 - told to the parent, which runs the stage itself
        _send(conn, encode({"error": f"{type(error).__name__}: {error}"}))
        return
    if not _send(conn, encode({"ready": True})):
        return
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(conn, inbox), daemon=True).start()
    tokens = SequenceTokens()
    while (data := inbox.get()) is not None:
        try:
            with gc_paused():  # records and rows are acyclic: see core/gc_pause
                header, tables = unpack(data)
                del data
                keys = [(str(d), int(f)) for d, f in header["keys"]]
                records = build_records(keys, tables, tokens, answers.width)
                reply = encode({"results": answers.answer(header["jobs"], records)})
                del records, tables
        except Exception as error:  # noqa: BLE001 - the parent stops the stage with this sentence
            reply = encode({"fatal": f"{type(error).__name__}: {error}"})
        if not _send(conn, reply):
            return


def _read(conn: Pipe, inbox: "queue.SimpleQueue[bytes | None]") -> None:
    try:
        while True:
            inbox.put(conn.recv_bytes())
    except (EOFError, OSError):
        inbox.put(None)


def _send(conn: Pipe, data: bytes) -> bool:
    """Send ``data``; ``False`` when the parent is gone."""
    try:
        conn.send_bytes(data)
        return True
    except (BrokenPipeError, EOFError, OSError):
        return False


def main(argv: list[str]) -> None:
    """``READ_FD WRITE_FD``: the pipe ends the parent passed to this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it closes the pipe
    read_fd, write_fd = (int(fd) for fd in argv)
    conn = Pipe(read_fd, write_fd)
    try:
        serve(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
