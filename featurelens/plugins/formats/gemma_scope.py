"""Gemma Scope's ``params.npz``: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
``b_enc``, ``b_dec``, ``threshold``; JumpReLU without subtracting ``b_dec`` first:
``f = relu(h) * (h > threshold)`` with ``h = x @ W_enc + b_enc``. Read-only."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import build, parse_dtype, require
from featurelens.plugins.formats.headers import npz_header

PARAMS = "params.npz"


def _params_file(path: Path) -> Path:
    return path if path.is_file() else path / PARAMS


def _check_shape(shapes: dict[str, tuple[int, ...]], name: str, shape: tuple[int, ...],
                 file: Path, fmt: str) -> None:
    """``require`` on header shapes: the same sentences, before any array is read."""
    require({k: _Shape(v) for k, v in shapes.items()},
            name, shape, file, fmt)


class _Shape:
    """Stands in for a tensor where only its ``shape`` is needed."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape


class GemmaScopeFormat:
    """Read (only) Gemma Scope's ``params.npz``."""

    name = "gemma_scope"

    def detect(self, path: str) -> bool:
        p = Path(path)
        return (p.is_file() and p.suffix == ".npz") or (p / PARAMS).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> SparseAutoencoder:
        file = _params_file(Path(path))
        fmt = "Gemma Scope"
        try:
            header = npz_header(file)  # shapes and dtypes first: nothing is read or allocated yet
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise FeaturelensError(
                f"{file} is not a readable .npz archive of arrays ({error}); re-download it."
            ) from None
        shapes = {name: shape for name, (shape, _) in header.items()}
        if "W_enc" not in shapes:
            _check_shape(shapes, "W_enc", (0, 0), file, fmt)
        if len(shapes["W_enc"]) != 2:
            raise FeaturelensError(f"W_enc in {file} must be a matrix [d_in, d_sae], not {list(shapes['W_enc'])}.")
        d_in, d_sae = shapes["W_enc"]
        expected = {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,), "threshold": (d_sae,)}
        for name, shape in expected.items():
            _check_shape(shapes, name, shape, file, fmt)
        try:
            with np.load(str(file), allow_pickle=False) as npz:
                state = {name: torch.from_numpy(np.array(npz[name])) for name in ("W_enc", *expected)}
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as error:
            raise FeaturelensError(
                f"{file} is not a readable .npz archive of arrays ({error}); re-download it."
            ) from None
        model = build("jumprelu", d_in, d_sae, {"apply_b_dec_to_input": False}, state,
                      dtype=parse_dtype(dtype, file), source=file)
        model.format = self.name
        return model.to(device) if device else model

    def save(self, dictionary: Any, path: str) -> None:
        raise FeaturelensError(
            "featurelens reads Gemma Scope params.npz files but does not write them; "
            "export as saelens (JumpReLU) instead."
        )
