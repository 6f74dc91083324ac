# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""A labeling actor killed mid-run (SIGKILL to its process): Ray restarts it, its requests in
flight are sent again, and every feature's result reaches the store exactly once, the same
rows as an in-process run."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from ray_cluster import ray_cluster  # noqa: F401 - fixture
from scale_fixtures import expected, job  # noqa: F401 - fixtures

import featurelens

RESULTS = {
    "explanations": "SELECT dictionary_id, feature, explainer, llm, text, options FROM explanations ORDER BY ALL",
    "failures": "SELECT stage, dictionary_id, feature, reason, method, attempts, answer FROM failures ORDER BY ALL",
    "llm_cache": "SELECT cache_key, response FROM llm_cache ORDER BY ALL",
    "llm_calls": "SELECT cache_key, purpose, dictionary_id, feature, status, input_tokens, output_tokens "
                 "FROM llm_calls ORDER BY ALL",
    "llm_attempts": "SELECT cache_key, attempt, purpose, dictionary_id, feature, outcome FROM llm_attempts "
                    "ORDER BY ALL",
}
LIMIT = 16


def _results(store: Path) -> dict:
    with featurelens.open_store(store, read_only=True) as db:
        return {name: db.sql(query) for name, query in RESULTS.items()}


def _explain(store: Path, llm: str, provider=None) -> None:
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings

    explain_features(store, ExplainSpec(llm, limit=LIMIT), provider=provider,
                     settings=EngineSettings(progress=False))


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_each_result_is_written_once(ray_cluster, expected: Path,
                                                                      tiny_model_dir: Path, tmp_path: Path) -> None:
    from featurelens.scale.remote_provider import ray_provider

    ray = ray_cluster
    llm = f"local:{tiny_model_dir}"
    alone, sharded = tmp_path / "alone.duckdb", tmp_path / "ray.duckdb"
    shutil.copy(expected, alone)
    shutil.copy(expected, sharded)
    _explain(alone, llm)

    killed: dict = {}
    # one request a pass (batch=1), so answers come one by one and a kill after two of them
    # finds the victim still holding requests; with the default batch of 8 each actor's share
    # of 16 features could be answered in one pass, and the victim hold nothing when killed
    with ray_provider(llm, {"batch": 1}, workers=2) as provider:
        victim = provider.actors[0]
        pid = ray.get(victim.describe.remote())["pid"]

        def kill_mid_run() -> None:
            deadline = time.monotonic() + 300
            while sum(provider.answered) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            killed["in_flight"] = provider.in_flight[0]  # requests the victim held when it died
            killed["answered"] = sum(provider.answered)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_mid_run, daemon=True)
        killer.start()
        _explain(sharded, llm, provider=provider)
        killer.join(timeout=5)
        restarted = ray.get(victim.describe.remote())["pid"]

    assert "in_flight" in killed, "the worker was never killed"
    assert killed["in_flight"] > 0 and killed["answered"] < LIMIT, "the kill did not land mid-run"
    assert restarted != pid  # Ray restarted the actor in a new process
    want, got = _results(alone), _results(sharded)
    assert want["llm_calls"].height >= LIMIT
    for name in RESULTS:
        assert got[name].equals(want[name]), f"{name} differs from the in-process run"
    with featurelens.open_store(sharded, read_only=True) as db:
        # every feature answered, and no call recorded twice or lost to the kill (same counts as alone)
        assert db.execute("SELECT count(DISTINCT feature) FROM llm_calls")[0][0] == LIMIT
        assert db.execute("SELECT count(*) FROM llm_attempts WHERE outcome <> 'ok'")[0][0] == 0
