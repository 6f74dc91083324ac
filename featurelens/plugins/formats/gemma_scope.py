"""Gemma Scope's ``params.npz``: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
``b_enc``, ``b_dec``, ``threshold``; JumpReLU without subtracting ``b_dec`` first:
``f = relu(h) * (h > threshold)`` with ``h = x @ W_enc + b_enc``. Read-only."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import build, parse_dtype, require

PARAMS = "params.npz"


def _params_file(path: Path) -> Path:
    return path if path.is_file() else path / PARAMS


class GemmaScopeFormat:
    """Read (only) Gemma Scope's ``params.npz``."""

    name = "gemma_scope"

    def detect(self, path: str) -> bool:
        p = Path(path)
        return (p.is_file() and p.suffix == ".npz") or (p / PARAMS).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> SparseAutoencoder:
        file = _params_file(Path(path))
        try:
            with np.load(str(file), allow_pickle=False) as npz:
                arrays = {name: torch.from_numpy(np.array(npz[name])) for name in npz.files}
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            raise FeaturelensError(
                f"{file} is not a readable .npz archive of arrays ({error}); re-download it."
            ) from None
        if "W_enc" not in arrays:
            require(arrays, "W_enc", (0, 0), file, "Gemma Scope")
        if arrays["W_enc"].dim() != 2:
            raise FeaturelensError(f"W_enc in {file} must be a matrix [d_in, d_sae], not {list(arrays['W_enc'].shape)}.")
        d_in, d_sae = arrays["W_enc"].shape
        fmt = "Gemma Scope"
        state = {
            "W_enc": arrays["W_enc"],
            "b_enc": require(arrays, "b_enc", (d_sae,), file, fmt),
            "W_dec": require(arrays, "W_dec", (d_sae, d_in), file, fmt),
            "b_dec": require(arrays, "b_dec", (d_in,), file, fmt),
            "threshold": require(arrays, "threshold", (d_sae,), file, fmt),
        }
        model = build("jumprelu", d_in, d_sae, {"apply_b_dec_to_input": False}, state,
                      dtype=parse_dtype(dtype, file))
        model.format = self.name
        return model.to(device) if device else model

    def save(self, dictionary: Any, path: str) -> None:
        raise FeaturelensError(
            "featurelens reads Gemma Scope params.npz files but does not write them; "
            "export as saelens (JumpReLU) instead."
        )
