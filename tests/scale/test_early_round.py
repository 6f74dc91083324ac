# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""The early round: the driver asks for the partials once before the end, so it merges their
bulk while the workers reduce their last shards (featurelens/scale/shard_flow.py).

The merged store must stay identical to in-process, also when a worker is killed after
the early round was sent (it then loses only what it carried since that partial).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from extract_calls import ray_extract_with
from scale_fixtures import assert_same_store, expected, job  # noqa: F401 - fixtures

from .test_ray_extraction import kill_a_reducer_at_shard, ray_cluster  # noqa: F401 - fixture


def test_the_early_round_leaves_about_one_shard_per_worker() -> None:
    from featurelens.scale.extraction import _shards_left
    from featurelens.scale.shard_flow import early_round_at

    assert early_round_at(24, 2) == 22
    assert early_round_at(4, 1) == 3
    assert early_round_at(2, 2) is None  # nothing would be left to overlap
    assert early_round_at(1, 1) is None
    assert early_round_at(None, 2) is None
    # 48 windows in batches of 2, shards of 3 batches: 8 shards; resumed after 6 batches: 6
    assert _shards_left(48, 2, 0, 3) == 8 and _shards_left(48, 2, 6, 3) == 6
    assert _shards_left(47, 2, 0, 3) == 8 and _shards_left(48, 2, 24, 3) == 0


@pytest.mark.slow
def test_two_workers_send_an_early_partial_each_and_the_store_is_identical(
        ray_cluster, job: dict, expected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featurelens.scale import extraction

    real_merge = extraction.merge_partial
    merges = {"n": 0}

    def counting_merge(into, data):
        merges["n"] += 1
        return real_merge(into, data)

    monkeypatch.setattr(extraction, "merge_partial", counting_merge)
    # no checkpoint before the end: one early partial and one last partial per worker
    result = ray_extract_with(store=tmp_path / "early.duckdb", workers=2, shard_batches=1,
                              checkpoint_seconds=1e9, **job)
    assert result.shards == 24 and merges["n"] == 4
    assert_same_store(tmp_path / "early.duckdb", expected)


@pytest.mark.slow
def test_a_worker_killed_after_the_early_round_loses_only_what_it_carried_since(
        ray_cluster, job: dict, expected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed = kill_a_reducer_at_shard(monkeypatch, 23)  # the early round went out once 22 shards were sent
    store = tmp_path / "killed-late.duckdb"
    result = ray_extract_with(store=store, workers=2, shard_batches=1, checkpoint_seconds=1e9, **job)
    assert killed
    assert result.shards == 24
    assert_same_store(store, expected)
