"""The small Ray cluster the labeling tests share: 2 CPUs, workers importing what this
process imports, a fake OpenAI key for workers that build an openai provider."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'featurelens[ray]')")
    if ray.is_initialized():
        ray.shutdown()
    options = dict(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20,
                   namespace="featurelens-tests",
                   runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path),
                                             "OPENAI_API_KEY": "sk-test-only"}})
    try:
        ray.init(**options)
    except Exception:  # noqa: BLE001 - Ray's node start-up wait can expire on saturated cores; once more
        ray.shutdown()
        ray.init(**options)
    yield ray
    ray.shutdown()
