# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""Workers that carry their state across shards, on a real local Ray cluster.

A worker sends a partial only when the driver commits or finishes, so a worker killed
in between loses every shard it carried; the driver must notice (the next partial does
not name them) and reduce them again, and the store must still equal in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from extract_calls import ray_extract_with
from scale_fixtures import assert_same_store, expected, job  # noqa: F401 - fixtures

from .test_ray_extraction import kill_a_reducer_at_shard, ray_cluster  # noqa: F401 - fixture


@pytest.mark.slow
def test_a_worker_killed_before_its_only_partial_loses_what_it_carried_and_nothing_else(
        ray_cluster, job: dict, expected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed = kill_a_reducer_at_shard(monkeypatch, 12)  # both workers hold carried shards by now, none flushed yet
    store = tmp_path / "killed.duckdb"
    # no checkpoint is due before the end: each worker sends one partial, at the end
    result = ray_extract_with(store=store, workers=2, shard_batches=1, checkpoint_seconds=1e9, **job)
    assert killed
    assert result.shards == 24
    assert result.redone_shards >= 1  # what the killed worker carried, reduced again
    assert_same_store(store, expected)
