"""Starting or joining Ray (core/ray_runtime.py): no Ray at import, one sentence on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray_runtime import ClusterError, connect, require_ray

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # tests/scale/test_no_ray_by_default.py checks this path in the fast suite
def test_importing_the_runtime_and_its_users_does_not_import_ray() -> None:
    code = ("import sys, featurelens.core.ray_runtime, featurelens.core.training.ray_training, "
            "featurelens.scale.cluster; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_ray_is_one_sentence_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    with pytest.raises(FeaturelensError, match=r"pip install 'featurelens\[ray\]'"):
        require_ray()


def test_scale_and_training_share_the_one_runtime() -> None:
    from featurelens.core.training import ray_training
    from featurelens.scale import cluster

    assert cluster.connected.__module__ == "featurelens.core.ray_runtime"
    assert cluster.ClusterError is ClusterError
    assert ray_training.connect is connect
