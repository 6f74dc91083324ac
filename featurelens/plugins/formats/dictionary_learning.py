"""saprmarks/dictionary_learning checkpoints: ``ae.pt`` (a state dict) and ``config.json``.

Read-only. ``ae.pt`` is a ``torch.save`` archive; it is read by
:mod:`featurelens.core.torch_archive`, which walks its opcodes with a fixed table and
builds only plain values and tensors (nothing is unpickled), so a checkpoint can never
run code on load. The encoding rules per ``trainer.dict_class``:

- ``AutoEncoder``: ``relu(encoder(x - bias))``, decoder ``decoder(f) + bias``.
- ``AutoEncoderTopK``: top-k of ``relu(encoder(x - b_dec))``.
- ``BatchTopKSAE``: ``relu(encoder(x - b_dec))`` kept above the learned ``threshold``.
- ``JumpReluAutoEncoder``: ``relu(h * (h > threshold)) * |W_dec row|`` with
  ``h = x @ W_enc + b_enc``, and decode divides the norms out again. We load it as a
  JumpReLU with decoder-norm rescaling and thresholds multiplied by those norms,
  which is the same function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from featurelens.core import torch_archive
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import build, parse_dtype, read_json, require
from featurelens.plugins.formats.strict import config_str

WEIGHTS = "ae.pt"
CFG = "config.json"
_CLASSES = ("AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder")


class DictionaryLearningFormat:
    """Read (only) dictionary_learning's checkpoints."""

    name = "dictionary_learning"

    def detect(self, path: str) -> bool:
        folder = Path(path)
        if folder.is_file() and folder.name == WEIGHTS:
            folder = folder.parent
        return folder.is_dir() and (folder / WEIGHTS).is_file() and (folder / CFG).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> SparseAutoencoder:
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        cfg = read_json(folder / CFG, "dictionary_learning")
        trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), dict) else {}
        dict_class = trainer.get("dict_class")
        if dict_class not in _CLASSES:
            raise FeaturelensError(
                f"{folder / CFG} names dict_class {dict_class!r}; featurelens reads "
                f"{', '.join(_CLASSES)} dictionary_learning checkpoints."
            )
        state = _safe_load(folder / WEIGHTS)
        src = folder / WEIGHTS
        d_in = trainer.get("activation_dim")
        d_sae = trainer.get("dict_size")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (d_in, d_sae)):
            raise FeaturelensError(
                f"{folder / CFG} needs positive integer trainer.activation_dim and trainer.dict_size, "
                f"found {d_in!r} and {d_sae!r}."
            )
        fmt = "dictionary_learning"
        meta = {"hookpoint": None, "model_id": config_str(trainer.get("lm_name"), "trainer.lm_name", folder / CFG)}
        if dict_class == "JumpReluAutoEncoder":
            w_dec = require(state, "W_dec", (d_sae, d_in), src, fmt).float()
            norms = w_dec.norm(dim=1)
            tensors = {
                "W_enc": require(state, "W_enc", (d_in, d_sae), src, fmt),
                "b_enc": require(state, "b_enc", (d_sae,), src, fmt),
                "W_dec": state["W_dec"], "b_dec": require(state, "b_dec", (d_in,), src, fmt),
                "threshold": require(state, "threshold", (d_sae,), src, fmt) * norms.to(state["threshold"].dtype),
            }
            options = {"apply_b_dec_to_input": False, "rescale_acts_by_decoder_norm": True, **meta}
            architecture = "jumprelu"
        else:
            bias_name = "bias" if dict_class == "AutoEncoder" else "b_dec"
            tensors = {
                "W_enc": require(state, "encoder.weight", (d_sae, d_in), src, fmt).T,
                "b_enc": require(state, "encoder.bias", (d_sae,), src, fmt),
                "W_dec": require(state, "decoder.weight", (d_in, d_sae), src, fmt).T,
                "b_dec": require(state, bias_name, (d_in,), src, fmt),
            }
            options = {"apply_b_dec_to_input": True, **meta}
            architecture = {"AutoEncoder": "relu", "AutoEncoderTopK": "topk", "BatchTopKSAE": "batchtopk"}[dict_class]
            if architecture in ("topk", "batchtopk"):
                options["k"] = _k(state, trainer, folder)
            if architecture == "batchtopk":
                tensors["threshold"] = require(state, "threshold", (), src, fmt).float()
        model = build(architecture, d_in, d_sae, options, tensors, dtype=parse_dtype(dtype, folder),
                      source=folder)
        model.format = self.name
        return model.to(device) if device else model

    def save(self, dictionary: Any, path: str) -> None:
        raise FeaturelensError(
            "featurelens reads dictionary_learning checkpoints but does not write them; "
            "export as saelens, sparsify or featurelens."
        )


def _k(state: dict[str, torch.Tensor], trainer: dict[str, Any], folder: Path) -> int:
    """TopK's k from the weights (a 0-d tensor) or the config, as a positive int."""
    k = state.get("k", trainer.get("k"))
    if isinstance(k, torch.Tensor) and k.numel() == 1 and not k.is_floating_point():
        k = int(k.item())
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise FeaturelensError(
            f"{folder} is a TopK dictionary_learning checkpoint without a positive integer k "
            f"(found {k!r} in ae.pt and config.json trainer.k); set trainer.k in {CFG}.")
    return k


def _safe_load(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``ae.pt``, read by core/torch_archive.py: plain values and tensors, never code."""
    if not path.is_file():
        raise FeaturelensError(f"{path} is missing; a dictionary_learning checkpoint keeps its weights there.")
    try:
        state = torch_archive.read(path)
    except torch_archive.UnsafeObject as error:
        raise FeaturelensError(
            f"{path} contains objects other than tensors (it names {str(error)[:120]}), and featurelens never "
            "unpickles a checkpoint; save the state_dict alone (torch.save(ae.state_dict(), ...))."
        ) from None
    except Exception as error:  # noqa: BLE001 - a damaged archive fails in zipfile, zlib or the reader
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise FeaturelensError(f"{path} is not a readable PyTorch file ({first}); re-download it.") from None
    if not isinstance(state, dict):
        raise FeaturelensError(
            f"{path} holds a {type(state).__name__}, not the state dict dictionary_learning saves."
        )
    odd = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if odd:
        raise FeaturelensError(
            f"{path} maps {', '.join(map(repr, odd[:5]))} to values that are not tensors; "
            "it is not the state dict dictionary_learning saves, so save ae.state_dict() again.")
    return state
