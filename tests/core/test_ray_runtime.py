"""Starting or joining Ray (core/ray_runtime.py): no Ray at import, one sentence on failure."""

from __future__ import annotations

import sys

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray.runtime import ClusterError, connect, require_ray


def test_missing_ray_is_one_sentence_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    with pytest.raises(FeaturelensError, match=r"pip install 'featurelens\[ray\]'"):
        require_ray()


def test_scale_and_training_share_the_one_runtime() -> None:
    from featurelens.core.training import ray_training
    from featurelens.scale import cluster

    assert cluster.connected.__module__ == "featurelens.core.ray.runtime"
    assert cluster.ClusterError is ClusterError
    assert ray_training.connect is connect
