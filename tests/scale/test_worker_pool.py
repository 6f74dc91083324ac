# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""Ray's fixed costs overlap the driver's own work (featurelens/scale/worker_pool.py).

Ray and the workers start while the driver prepares, and Ray shuts down while the driver
finishes. These tests start their own local cluster (not the shared fixture), because
who starts and stops Ray is what they check; that takes 10-40 s on 2 busy cores, so all
but the first are slow.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pytest
from extract_calls import ray_extract_with, split_options
from scale_fixtures import assert_same_store, expected, job  # noqa: F401 - fixtures

import featurelens

from .test_ray_extraction import _reducer_pids


def test_a_worker_finds_the_drivers_excluded_token_ids_itself(job: dict) -> None:
    """A worker started before the driver has a tokenizer excludes the same ids."""
    from featurelens.core.extraction.extractor import prepare, settings_of
    from featurelens.scale.extract_worker import ShardReducer

    for include_special in (False, True):
        spec, _ = split_options({**job, "split": "all", "include_special": include_special})
        plan = prepare(spec)
        worker = ShardReducer({"model": spec.model, "backend": spec.backend, "dtype": spec.dtype,
                               "device": "cpu", "dictionary": spec.dictionary, "dictionary_name": None,
                               "hookpoint": spec.hookpoint, "context": spec.context,
                               "batch_size": spec.batch_size, "include_special": include_special,
                               "exclude_outlier_norm": None, "settings": asdict(settings_of(spec))}, 1)
        assert worker.special_ids() == sorted(plan.reduce.specials)
        assert bool(worker.special_ids()) is not include_special
        assert worker.carried.state.settings == plan.settings


def _no_ray_left(ray) -> None:
    assert not ray.is_initialized()
    deadline = time.time() + 30  # ray.kill is asynchronous: the process may take a moment to go
    while _reducer_pids() and time.time() < deadline:
        time.sleep(0.2)
    assert not _reducer_pids()


@pytest.mark.slow
def test_ray_starts_while_the_driver_prepares_and_stops_while_it_finishes(
        job: dict, expected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'featurelens[ray]')")
    from featurelens.scale import extraction, worker_pool

    assert not ray.is_initialized(), "this test starts its own cluster"
    events: list[str] = []
    real_prepare, real_finish = extraction.prepare, extraction._finish
    real_close = worker_pool.WorkerPool.close_in_background

    def prepare_once_ray_is_up(spec):
        # sequential start-up (prepare, then Ray) would never see Ray here and fail
        deadline = time.time() + 120
        while not ray.is_initialized() and time.time() < deadline:
            time.sleep(0.05)
        events.append("prepare saw Ray" if ray.is_initialized() else "prepare without Ray")
        return real_prepare(spec)

    def finish(*args, **kwargs):
        events.append("finish")
        return real_finish(*args, **kwargs)

    def close_in_background(self):
        events.append("workers killed, Ray shutting down")
        return real_close(self)

    monkeypatch.setattr(extraction, "prepare", prepare_once_ray_is_up)
    monkeypatch.setattr(extraction, "_finish", finish)
    monkeypatch.setattr(worker_pool.WorkerPool, "close_in_background", close_in_background)
    result = ray_extract_with(store=tmp_path / "ray.duckdb", workers=2, shard_batches=3, **job)
    assert events == ["prepare saw Ray", "workers killed, Ray shutting down", "finish"]
    assert result.prepare_seconds > 0 and result.ray_start_seconds > 0 and result.ray_stop_seconds > 0
    assert result.stream_seconds + result.finish_seconds <= result.seconds
    assert_same_store(tmp_path / "ray.duckdb", expected)
    _no_ray_left(ray)


@pytest.mark.slow
def test_bad_input_found_while_ray_starts_is_one_sentence_and_leaves_nothing(
        cli, job: dict, tmp_path: Path) -> None:
    """The driver's error wins, the workers that started are stopped, the store is untouched."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'featurelens[ray]')")
    assert not ray.is_initialized(), "this test starts its own cluster"
    store = tmp_path / "s.duckdb"
    result = cli("extract", "--model", job["model"], "--hookpoint", job["hookpoint"], "--dictionary",
                 str(tmp_path / "no-such-dictionary"), "--corpus", job["corpus"], "--tokens", 64,
                 "--context", 16, "--device", "cpu", "--split", "all", "--store", store,
                 "--executor", "ray", "--workers", 2)
    assert result.exit_code != 0
    assert "no-such-dictionary" in result.output and "Traceback" not in result.output
    ours = [line for line in result.output.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(ours) == 1 and ours[0].startswith("Error: "), result.output  # transformers' bar aside
    if store.exists():
        with featurelens.open_store(store, read_only=True) as db:
            assert db.execute("SELECT count(*) FROM runs")[0][0] == 0
    _no_ray_left(ray)
