"""``featurelens label --processes 2`` (offline labeling over worker processes) killed with
``kill -9`` at random points, then rerun to the end: its workers end with it, and the store
ends up as one uninterrupted run in one process leaves it (same rows, no duplicates)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic_store import fill_store

import featurelens

TESTS = Path(__file__).resolve().parents[1]
N = 9000  # five pages of 2,048 features a stage


def _command(path: Path, processes: int) -> list[str]:
    return [sys.executable, "-m", "featurelens", "label", "--explainer", "token-lookup", "--scorer", "token-check",
            "--no-progress", "--processes", str(processes), "--store", str(path)]


def _rows(path: Path) -> list[list[tuple]]:
    with featurelens.open_store(path, read_only=True) as store:
        return [store.execute("SELECT explanation_id, feature, text, options FROM explanations ORDER BY ALL"),
                store.execute("SELECT score_id, feature, score, metrics, details FROM scores ORDER BY ALL"),
                store.execute("SELECT stage, feature, reason FROM failures WHERE resolved_at IS NULL ORDER BY ALL")]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_kill9_offline_label_with_workers_then_rerun_equals_one_process(tmp_path):
    base = tmp_path / "base.duckdb"
    with featurelens.open_store(base) as store:
        fill_store(store, n_features=N, n_sequences=256)
        store.execute("DELETE FROM explanations")
    alone, killed = tmp_path / "alone.duckdb", tmp_path / "killed.duckdb"
    shutil.copy(base, alone)
    shutil.copy(base, killed)
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "FEATURELENS_LOAD_PLUGINS": ""}
    subprocess.run(_command(alone, 1), env=env, check=True, capture_output=True, timeout=600)

    rng = random.Random(11)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(_command(killed, 2), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        started = time.monotonic() + 60
        while not (workers := _children(process.pid)) and process.poll() is None and time.monotonic() < started:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 3.0))  # into the explain stage, or on into the score stage
        if process.poll() is not None:
            break  # finished before this kill
        workers = _children(process.pid) or workers
        assert workers, "no worker processes were started"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        ended = time.monotonic() + 30
        while any(_running(pid) for pid in workers) and time.monotonic() < ended:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in workers), "a worker outlived its killed parent"
    assert kills >= 1
    finished = subprocess.run(_command(killed, 2), env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert _rows(killed) == _rows(alone)
    with featurelens.open_store(killed, read_only=True) as store:
        assert store.execute("SELECT count(*) = count(DISTINCT explanation_id) FROM explanations")[0][0]
