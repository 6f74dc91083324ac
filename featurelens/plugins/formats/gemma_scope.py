"""Gemma Scope's checkpoints, read-only. JumpReLU without subtracting ``b_dec`` first:
``f = relu(h) * (h > threshold)`` with ``h = x @ W_enc + b_enc``.

- Gemma Scope (Gemma 2): ``params.npz`` with ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
  ``b_enc``, ``b_dec``, ``threshold``.
- Gemma Scope 2 (Gemma 3): a folder with ``params.safetensors`` (``w_enc [d_in, d_sae]``,
  ``w_dec [d_sae, d_out]``, ``b_enc``, ``b_dec``, ``threshold``, and for affine
  transcoders ``affine_skip_connection [d_in, d_out]``) and an optional ``config.json``.
  Transcoders are told apart as SAELens's ``gemma_3`` loader does: the config's
  ``hf_hook_point_out`` or ``affine_connection``, a skip matrix, or ``transcoder`` in the
  folder's path (``transcoder_all/layer_0_width_16k_l0_big``).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import (
    build,
    parse_dtype,
    read_json,
    read_safetensors,
    require,
    require_shape,
)
from featurelens.plugins.formats.headers import npz_header, shape_of

PARAMS = "params.npz"
PARAMS_2 = "params.safetensors"
CONFIG_2 = "config.json"


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
        return (p.is_file() and p.suffix == ".npz") or (p / PARAMS).is_file() or (p / PARAMS_2).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> SparseAutoencoder:
        if (Path(path) / PARAMS_2).is_file() and not (Path(path) / PARAMS).is_file():
            model = _load_scope_2(Path(path), dtype)
            model.format = self.name
            return model.to(device) if device else model
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


def _load_scope_2(folder: Path, dtype: Any) -> SparseAutoencoder:
    """A Gemma Scope 2 folder: an SAE, or a transcoder (affine when it has a skip matrix)."""
    config = read_json(folder / CONFIG_2, "Gemma Scope 2") if (folder / CONFIG_2).is_file() else {}
    architecture = config.get("architecture", "jump_relu")
    if architecture != "jump_relu":
        raise FeaturelensError(f"{folder / CONFIG_2} gives architecture={architecture!r}; Gemma Scope 2 "
                               "checkpoints featurelens reads are jump_relu.")
    src = folder / PARAMS_2
    fmt = "Gemma Scope 2"
    tensors = read_safetensors(src, fmt)
    if "w_enc" not in tensors:
        require_shape(tensors, "w_enc", (0, 0), src, fmt)  # the one sentence naming what the file has
    if len(shape_of(tensors, "w_enc")) != 2:
        raise FeaturelensError(f"w_enc in {src} must be a matrix [d_in, d_sae], not {list(shape_of(tensors, 'w_enc'))}.")
    d_in, d_sae = shape_of(tensors, "w_enc")
    d_out = shape_of(tensors, "w_dec")[-1] if "w_dec" in tensors and len(shape_of(tensors, "w_dec")) == 2 else d_in
    expected = {"w_dec": (d_sae, d_out), "b_enc": (d_sae,), "b_dec": (d_out,), "threshold": (d_sae,)}
    skip = "affine_skip_connection" in tensors
    if skip:
        expected["affine_skip_connection"] = (d_in, d_out)
    for name, shape in expected.items():
        require_shape(tensors, name, shape, src, fmt)
    extra = sorted(set(tensors) - {"w_enc", *expected})
    if extra:
        raise FeaturelensError(f"{src} holds {', '.join(extra)}, which a Gemma Scope 2 checkpoint does not use; "
                               "featurelens cannot encode as its writer did.")
    transcoder = (bool(config.get("hf_hook_point_out")) or "affine_connection" in config or skip or d_out != d_in
                  or "transcoder" in "/".join(folder.parts[-2:]))
    state = {"W_enc": tensors["w_enc"], "W_dec": tensors["w_dec"], "b_enc": tensors["b_enc"],
             "b_dec": tensors["b_dec"], "threshold": tensors["threshold"]}
    want = parse_dtype(dtype, src)
    if not transcoder:
        return build("jumprelu", d_in, d_sae, {"apply_b_dec_to_input": False}, state, dtype=want, source=src)
    if skip:
        state["W_skip"] = tensors["affine_skip_connection"].T.contiguous()
    options = {"activation": "jumprelu", "skip": skip, "d_out": d_out, "apply_b_dec_to_input": False}
    return build("transcoder", d_in, d_sae, options, state, dtype=want, source=src)
