# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""Two real Ray nodes on this machine (``ray start --head`` + ``ray start --address``), one
worker on each: the sharded store equals an in-process run's, table by table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from scale_fixtures import assert_same_store, expected, job  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def _environment() -> dict[str, str]:
    """Ray 2.60 turns token authentication on for `ray start --head`: every node and the
    driver must run with it (the token is the one Ray keeps in ~/.ray/auth_token)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_nodes():
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'featurelens[ray]')")
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = _environment()
    port = _free_port()
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                        "--include-dashboard=false", "--object-store-memory=100000000", *common],
                       check=True, env=env, capture_output=True, timeout=180)
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                        "--object-store-memory=100000000", *common],
                       check=True, env=env, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


DRIVER = """
import json, sys
from dataclasses import fields
from featurelens.core.extraction import ExtractSpec
from featurelens.scale import extract_on_ray
job = json.loads(sys.argv[1])
names = {f.name for f in fields(ExtractSpec)}
spec = ExtractSpec(**{k: v for k, v in job.items() if k in names})
rest = {k: v for k, v in job.items() if k not in names}
result = extract_on_ray(spec, store=sys.argv[2], address=sys.argv[3], workers=2, threads=1, shard_batches=2,
                        **rest)
print(json.dumps(result.worker_nodes))
"""


def test_extraction_across_two_nodes_equals_in_process(two_nodes: str, job: dict, expected: Path,
                                                       tmp_path: Path) -> None:
    """The driver is its own process, as a user's would be, joining the cluster by address."""
    store = tmp_path / "two-nodes.duckdb"
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(job), str(store), two_nodes],
                          env=_environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    nodes = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(nodes) == 2 and len(set(nodes)) == 2, "both workers ran on one node"
    assert_same_store(store, expected)
