"""Taking turns on the store file, so ``serve`` can watch a job that writes.

DuckDB lets one process hold a database file for writing and no other process open it
meanwhile, not even read-only. A browser that kept the file open would lock every job
out; a job that kept it open would leave the browser nothing to show. So both take
turns: a process that finds the file locked touches a *wait file* beside it
(``.<store>.waiting``) and retries; the holder looks at that file at points where it
holds nothing half-done (a job after committing a flush, the browser after a page or
when idle) and, if someone has waited since it opened the file, closes it. The job
reopens on its next write, the browser on its next page. A job pays for a turn only
when someone asked for one (benchmarks/serve_alongside_job.py measures it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

#: Seconds a job that finds the store locked keeps retrying before it gives up.
ENV_LOCK_WAIT = "FEATURELENS_LOCK_WAIT"
DEFAULT_LOCK_WAIT_S = 3.0  # a labeling job gives a turn after every flush, at least once a second
#: After giving the file away, how long the holder waits before taking it back, so the
#: waiting side gets in first (it retries every few milliseconds).
HANDOVER_S = 0.05


def wait_file(store: Path) -> Path:
    """The file whose modification time says "someone is waiting for this store"."""
    return store.with_name(f".{store.name}.waiting")


def ask_for_turn(store: Path) -> None:
    """Say that this process waits for ``store`` (create or touch the wait file)."""
    marker = wait_file(store)
    try:
        marker.touch()
        os.utime(marker)
    except OSError:
        pass  # a read-only folder: the holder will not hear us, and we time out as before


def waited_since(store: Path, moment: float) -> bool:
    """True when someone asked for ``store`` after ``moment`` (a ``time.time()``)."""
    try:
        return wait_file(store).stat().st_mtime > moment
    except OSError:
        return False


def lock_wait_seconds() -> float:
    """``$FEATURELENS_LOCK_WAIT`` or the default: how long a job waits for its turn."""
    try:
        return max(0.0, float(os.environ.get(ENV_LOCK_WAIT, DEFAULT_LOCK_WAIT_S)))
    except ValueError:
        return DEFAULT_LOCK_WAIT_S


def retry_while_locked(store: Path, attempt: Callable[[], T], is_locked: Callable[[BaseException], bool],
                       wait_s: float) -> T:
    """``attempt()`` until it stops failing with a lock conflict or ``wait_s`` passes;
    every failed try asks the holder for a turn. The last error is re-raised."""
    deadline = time.monotonic() + wait_s
    pause = 0.005
    while True:
        try:
            return attempt()
        except BaseException as error:  # noqa: BLE001 - re-raised unless it is a lock conflict
            if not is_locked(error) or time.monotonic() >= deadline:
                raise
        ask_for_turn(store)
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.02)  # the holder gives turns for HANDOVER_S: retry within it
