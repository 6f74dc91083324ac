"""Gemma Scope params.npz: JumpReLU without b_dec subtraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.formats.gemma_scope import GemmaScopeFormat

D_IN, D_SAE = 8, 24


def _params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
            "W_dec": rng.standard_normal((D_SAE, D_IN)).astype(np.float32),
            "b_enc": (rng.standard_normal(D_SAE) * 0.1).astype(np.float32),
            "b_dec": rng.standard_normal(D_IN).astype(np.float32),
            "threshold": rng.uniform(0, 0.5, D_SAE).astype(np.float32)}


def test_encodes_like_gemma_scope(tmp_path: Path) -> None:
    p = _params()
    (tmp_path / "layer_6").mkdir()
    np.savez(tmp_path / "layer_6" / "params.npz", **p)
    fmt = GemmaScopeFormat()
    assert fmt.detect(str(tmp_path / "layer_6")) and fmt.detect(str(tmp_path / "layer_6" / "params.npz"))
    sae = fmt.load(str(tmp_path / "layer_6"))
    x = np.random.default_rng(1).standard_normal((30, D_IN)).astype(np.float32)
    pre = x @ p["W_enc"] + p["b_enc"]
    acts = (pre > p["threshold"]) * np.maximum(pre, 0)
    got = sae.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, acts, atol=1e-5)
    np.testing.assert_allclose(sae.decode(torch.from_numpy(acts)).numpy(), acts @ p["W_dec"] + p["b_dec"], atol=1e-4)


def test_bad_files(tmp_path: Path) -> None:
    p = _params()
    del p["threshold"]
    np.savez(tmp_path / "params.npz", **p)
    with pytest.raises(FeaturelensError, match="has no tensor 'threshold'"):
        GemmaScopeFormat().load(str(tmp_path))
    (tmp_path / "params.npz").write_bytes(b"not a zip")
    with pytest.raises(FeaturelensError, match="not a readable .npz"):
        GemmaScopeFormat().load(str(tmp_path))
