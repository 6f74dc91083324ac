# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""Sharded extraction on a real local Ray cluster: the store equals an in-process run's.

Ray is optional (``featurelens[ray]``, installed by the test extra); these tests skip
where it is missing. Clusters are small (2 CPUs) and shut down in teardown. The fast
suite runs the table-by-table comparison; resume, CLI and the killed worker are slow
(each starts fresh actors, 15-40 s on 2 busy cores).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from extract_calls import extract_with, ray_extract_with
from scale_fixtures import assert_same_store, expected, job  # noqa: F401 - fixtures

import featurelens
from featurelens.core.errors import FeaturelensError


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'featurelens[ray]')")
    options = dict(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20,
                   runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    try:
        ray.init(**options)
    except Exception:  # noqa: BLE001 - Ray's 30 s node start-up wait can expire on saturated cores; once more
        ray.shutdown()
        ray.init(**options)
    yield ray
    ray.shutdown()


def test_two_workers_give_the_in_process_store_table_by_table(ray_cluster, job: dict, expected: Path,
                                                               tmp_path: Path) -> None:

    result = ray_extract_with(store=tmp_path / "ray.duckdb", workers=2, shard_batches=3,
                            checkpoint_every=5, **job)
    assert result.shards == 8 and len(result.worker_nodes) == 2
    assert_same_store(tmp_path / "ray.duckdb", expected)
    again = ray_extract_with(store=tmp_path / "ray.duckdb", workers=2, **job)
    assert again.already_done


@pytest.mark.slow
def test_a_lazy_ray_run_leaves_the_effects_pending_and_they_fill_to_the_in_process_ones(
        ray_cluster, job: dict, expected: Path, tmp_path: Path) -> None:
    from featurelens.core.lazy_logits import PENDING, fill
    from featurelens.core.selection import Selection

    store = tmp_path / "lazy.duckdb"
    ray_extract_with(store=store, workers=2, shard_batches=4, logit_effects="lazy", **job)
    with featurelens.open_store(store) as db:
        config = json.loads(db.execute("SELECT config FROM runs WHERE kind = 'extract'")[0][0])
        assert config[PENDING]["dictionary"] == str(Path(job["dictionary"]).resolve())
        assert db.execute("SELECT count(*) FROM features WHERE top_logits IS NOT NULL")[0][0] == 0
        assert fill(db, Selection(), progress=False).filled == 64
        filled = db.execute("SELECT feature, top_logits FROM features ORDER BY feature")
    with featurelens.open_store(expected, read_only=True) as db:
        assert filled == db.execute("SELECT feature, top_logits FROM features ORDER BY feature")


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["killed", "worker failed for good"])
def test_driver_interrupted_resumes_from_its_last_committed_merge(ray_cluster, job: dict, expected: Path,
                                                                  tmp_path: Path, failure: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed, or stopped by a shard that failed after its retries: committed merges stay."""
    from featurelens.scale import extraction
    from featurelens.scale.cluster import ClusterError

    error = KeyboardInterrupt if failure == "killed" else ClusterError

    store = tmp_path / "cut.duckdb"
    real_merge = extraction.merge_partial
    merges = {"n": 0}

    def merge_then_die(into, other):
        merges["n"] += 1
        if merges["n"] > 5:
            raise error("stopped between merges")
        return real_merge(into, other)

    monkeypatch.setattr(extraction, "merge_partial", merge_then_die)
    with pytest.raises(error):
        ray_extract_with(store=store, workers=2, shard_batches=2, checkpoint_every=4, **job)
    with featurelens.open_store(store, read_only=True) as db:
        assert db.execute("SELECT status FROM runs")[0][0] == "running"
        assert db.execute("SELECT count(*) FROM features")[0][0] == 0
        committed = json.loads(db.execute("SELECT progress FROM runs")[0][0])["batches_done"]
    # 5 partials merged (one per worker per 4 batches): a commit needs both workers' partials
    # of a round, so which prefix was committed depends on the workers' relative speed
    assert committed in (4, 8, 12)
    monkeypatch.setattr(extraction, "merge_partial", real_merge)
    result = ray_extract_with(store=store, workers=2, shard_batches=2, **job)
    assert result.resumed_from == committed
    assert_same_store(store, expected)


@pytest.mark.slow
def test_in_process_run_resumes_on_ray(ray_cluster, job: dict, expected: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Same run id, same checkpoint files: either executor finishes the other's run."""
    from featurelens.core.extraction.state import ExtractionState

    original = ExtractionState.accumulate
    calls = {"n": 0}

    def accumulate(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(ExtractionState, "accumulate", accumulate)
    with pytest.raises(KeyboardInterrupt):
        extract_with(store=tmp_path / "mixed.duckdb", checkpoint_every=3, **job)
    monkeypatch.setattr(ExtractionState, "accumulate", original)
    result = ray_extract_with(store=tmp_path / "mixed.duckdb", workers=2, shard_batches=4, **job)
    assert result.resumed_from == 6
    assert_same_store(tmp_path / "mixed.duckdb", expected)


def _reducer_pids() -> list[int]:
    """Processes of Ray actors running ShardReducer (Ray titles them ``ray::ShardReducer...``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::ShardReducer"):
                pids.append(int(entry.name))
    return pids


def kill_a_reducer_at_shard(monkeypatch: pytest.MonkeyPatch, index: int) -> list[int]:
    """SIGKILL one of the two workers when the driver cuts shard ``index``; the returned list
    gets the killed pid."""
    from featurelens.scale import shard_flow

    real_cut = shard_flow.cut_shards
    killed: list[int] = []

    def cut_and_kill(*args):
        for n, shard in enumerate(real_cut(*args)):
            if n == index:
                pids = _reducer_pids()
                assert len(pids) == 2
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            yield shard

    monkeypatch.setattr(shard_flow, "cut_shards", cut_and_kill)
    return killed


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_only_its_shard(ray_cluster, job: dict, expected: Path,
                                                      tmp_path: Path) -> None:

    store = tmp_path / "killed.duckdb"
    folder = tmp_path / ".killed.duckdb.extract"
    killed: list[int] = []

    def kill_one_worker_after_first_commit() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if folder.exists() and any(folder.glob("*/state-*.json")):
                pids = _reducer_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker_after_first_commit)
    killer.start()
    result = ray_extract_with(store=store, workers=2, shard_batches=1, checkpoint_every=1, **job)
    killer.join()
    assert killed, "no worker was killed"
    assert result.shards == 24  # every shard merged once, the lost one rerun by Ray
    assert_same_store(store, expected)


@pytest.mark.slow
def test_cli_executor_ray(ray_cluster, cli, job: dict, expected: Path, tmp_path: Path) -> None:
    store = tmp_path / "cli.duckdb"
    args = ["extract", "--model", job["model"], "--hookpoint", job["hookpoint"], "--dictionary",
            job["dictionary"], "--corpus", job["corpus"], "--tokens", job["tokens"], "--batch-size", 2,
            "--context", 16, "--top-k", 4, "--quantile-examples", 6, "--quantile-bins", 3,
            "--random-examples", 5, "--device", "cpu", "--split", "all", "--store", store]
    result = cli(*args, "--executor", "ray", "--workers", 2)
    assert result.exit_code == 0, result.output
    assert "Extracted 720 tokens in 48 windows" in result.output
    assert_same_store(store, expected)


def test_missing_ray_is_one_sentence(cli, job: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from featurelens.scale.cluster import require_ray

    with pytest.raises(FeaturelensError, match=r"pip install 'featurelens\[ray\]'"):
        require_ray()
    result = cli("extract", "--model", job["model"], "--hookpoint", job["hookpoint"], "--corpus",
                 job["corpus"], "--tokens", 64, "--context", 16, "--device", "cpu",
                 "--store", tmp_path / "s.duckdb", "--executor", "ray")
    assert result.exit_code != 0
    assert "needs Ray" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.duckdb").exists() or tables_empty(tmp_path / "s.duckdb")


def tables_empty(store: Path) -> bool:
    with featurelens.open_store(store, read_only=True) as db:
        return db.execute("SELECT count(*) FROM runs")[0][0] == 0


def test_address_needs_the_ray_executor(cli, job: dict, tmp_path: Path) -> None:
    result = cli("extract", "--model", job["model"], "--hookpoint", job["hookpoint"], "--corpus", job["corpus"],
                 "--store", tmp_path / "s.duckdb", "--address", "auto")
    assert result.exit_code != 0 and "--address needs --executor ray" in result.output


