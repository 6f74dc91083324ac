"""Llama Scope checkpoints (OpenMOSS's lm_saes): JumpReLU SAEs trained on inputs rescaled
to an average norm of ``sqrt(d_model)``. Read-only.

Two layouts, as SAELens's ``llama_scope`` and ``llama_scope_r1_distill`` loaders read them:

- ``hyperparams.json`` + ``checkpoints/final.safetensors``: one scalar
  ``jump_relu_threshold`` and ``dataset_average_activation_norm.in``;
- ``config.json`` (with ``hook_point_in``) + ``sae_weights.safetensors``: a per-feature
  ``log_jumprelu_threshold``.

Both hold ``encoder.weight [d_sae, d_model]``, ``encoder.bias``, ``decoder.weight
[d_model, d_sae]`` and ``decoder.bias``. Encoding is SAELens's after it folds the input
scale ``s`` into the weights (``W_enc * s``, ``W_dec / s``, ``b_dec / s``):
``f = relu(h) * (h > threshold)`` with ``h = x @ W_enc + b_enc`` and no ``b_dec``
subtracted first; the scalar threshold is multiplied by ``sqrt(d_model) /
dataset_average_activation_norm.in`` as SAELens does. ``s`` is the ``norm_scale`` the
caller passes (``saelens:`` names pass the table's ``norm_scaling_factor``), else the
folder's own ``sqrt(d_model) / dataset_average_activation_norm.in``; a folder that
records neither is refused, since its SAE expects inputs scaled by an unknown factor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import build, config_int, parse_dtype, read_json, read_safetensors, require
from featurelens.plugins.formats.strict import config_str

HYPERPARAMS = "hyperparams.json"
FINAL = Path("checkpoints") / "final.safetensors"
CONFIG = "config.json"
WEIGHTS = "sae_weights.safetensors"
FMT = "Llama Scope"


def _average_norm(cfg: dict[str, Any], source: Path) -> float | None:
    norms = cfg.get("dataset_average_activation_norm")
    if norms is None:
        return None
    value = norms.get("in") if isinstance(norms, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
        raise FeaturelensError(f"{source} gives dataset_average_activation_norm={norms!r}; it must hold a "
                               "positive number 'in'.")
    return float(value)


def _positive(value: Any, name: str, source: Path | str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
        raise FeaturelensError(f"{source} gives {name}={value!r}; it must be a positive number.")
    return float(value)


class LlamaScopeFormat:
    """Read (only) Llama Scope's folders."""

    name = "llama_scope"

    def detect(self, path: str) -> bool:
        folder = Path(path)
        if (folder / HYPERPARAMS).is_file() and (folder / FINAL).is_file():
            return True
        if not ((folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()):
            return False
        try:
            return "hook_point_in" in read_json(folder / CONFIG, FMT)
        except FeaturelensError:
            return False

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, norm_scale: float | None = None,
             **_: Any) -> SparseAutoencoder:
        folder = Path(path)
        first = (folder / HYPERPARAMS).is_file()
        config_file = folder / (HYPERPARAMS if first else CONFIG)
        cfg = read_json(config_file, FMT)
        d_in = config_int(cfg, "d_model", config_file, FMT)
        if d_in == 0:
            raise FeaturelensError(f"{config_file} gives d_model=0; it must be a positive integer.")
        if first:
            d_sae = config_int(cfg, "d_sae", config_file, FMT)
        else:
            d_sae = d_in * config_int(cfg, "expansion_factor", config_file, FMT)
        average = _average_norm(cfg, config_file)
        if norm_scale is None:
            if average is None:
                raise FeaturelensError(
                    f"{folder} is a Llama Scope SAE trained on rescaled inputs, and {config_file.name} does not "
                    "record the scale (dataset_average_activation_norm); load it by its SAELens name "
                    "(saelens:<release>/<id>), whose table has it.")
            norm_scale = d_in ** 0.5 / average
        scale = _positive(norm_scale, "norm_scale", folder)
        src = folder / (FINAL if first else WEIGHTS)
        tensors = read_safetensors(src, FMT)
        expected = {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "decoder.weight": (d_in, d_sae),
                    "decoder.bias": (d_in,)}
        if not first:
            expected["log_jumprelu_threshold"] = (d_sae,)
        for name, shape in expected.items():
            require(tensors, name, shape, src, FMT)
        extra = sorted(set(tensors) - set(expected))
        if extra:
            raise FeaturelensError(f"{src} holds {', '.join(extra)}, which a Llama Scope JumpReLU SAE does not use; "
                                   "featurelens cannot encode as its writer did.")
        want = parse_dtype(dtype, folder) or torch.float32
        work = torch.float64 if want == torch.float64 else torch.float32  # SAELens folds in float32
        with torch.no_grad():
            w_enc = tensors["encoder.weight"].T.to(work) * scale
            w_dec = tensors["decoder.weight"].T.to(work) / scale
            b_dec = tensors["decoder.bias"].to(work) / scale
            if first:
                if average is None:
                    raise FeaturelensError(f"{config_file} lacks dataset_average_activation_norm, which scales its "
                                           "jump_relu_threshold; restore the original hyperparams.json.")
                threshold = torch.full((d_sae,), _positive(cfg.get("jump_relu_threshold"), "jump_relu_threshold",
                                                           config_file) * d_in ** 0.5 / average, dtype=work)
            else:
                threshold = tensors["log_jumprelu_threshold"].to(work).exp()
        state = {"W_enc": w_enc, "b_enc": tensors["encoder.bias"], "W_dec": w_dec, "b_dec": b_dec,
                 "threshold": threshold}
        hookpoint = config_str(cfg.get("hook_point_in"), "hook_point_in", config_file)
        model = build("jumprelu", d_in, d_sae, {"apply_b_dec_to_input": False, "hookpoint": hookpoint},
                      {k: v.to(want) for k, v in state.items()}, dtype=want, source=folder)
        model.config["activation_norm_scale"] = scale
        model.format = self.name
        return model.to(device) if device else model

    def save(self, dictionary: Any, path: str) -> None:
        raise FeaturelensError("featurelens reads Llama Scope checkpoints but does not write them; export as "
                               "saelens (JumpReLU) instead.")
