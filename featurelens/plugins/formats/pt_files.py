"""Sparse autoencoders saved as one ``torch.save`` state dict file (``.pt``/``.pth``).

Read-only, and never unpickled: :mod:`featurelens.core.torch_archive` walks the file's
opcodes with a fixed table that builds only plain values and tensors. Its keys and
shapes are read first with every tensor on the ``meta`` device, so a file that is not one
of the layouts below, or whose shapes disagree, is refused before its weights are read.

The layouts are those of SAELens's pretrained families, converted as SAELens's loaders
convert them (``W_enc`` is ``[d_in, d_sae]``, ``W_dec`` ``[d_sae, d_in]``):

- ``deepseek_r1`` (qresearch's DeepSeek-R1-Distill SAE): ``encoder.weight``
  ``[d_sae, d_in]``, ``encoder.bias``, ``decoder.weight`` ``[d_in, d_sae]``,
  ``decoder.bias``; both weights transposed; ReLU of ``x @ W_enc + b_enc`` (the decoder
  bias is not subtracted first).
- ``goodfire``: the same with ``encoder_linear.*`` and ``decoder_linear.*``.
- ``qwen_scope``: ``W_enc`` ``[d_sae, d_in]``, ``W_dec`` ``[d_in, d_sae]``, ``b_enc``,
  ``b_dec``; both transposed; top-``k`` of ``x @ W_enc + b_enc`` (then ReLU).
  ``k`` is not in the file: SAELens reads it from the repository's name
  (``...-W32K-L0_50`` is k=50), and so does this format, from the ``k`` that
  ``saelens:`` resolution passes or from the Hugging Face cache folder the file lies in.

All three read the residual stream after their layer (``blocks.L.hook_resid_post``);
the hookpoint is the one the caller names, as for any checkpoint without a config. The
weights are float32 unless a dtype is asked for: SAELens's ``from_pretrained`` builds
every family in its ``dtype`` argument, float32 by default, whatever its loader's config
says (the DeepSeek loader's bfloat16 is overridden by it).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from featurelens.core import torch_archive
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import build, parse_dtype

SUFFIXES = (".pt", ".pth")

#: family -> (encoder weight, encoder bias, decoder weight, decoder bias), each weight as
#: the file stores it (``[d_sae, d_in]`` encoder, ``[d_in, d_sae]`` decoder).
LAYOUTS: dict[str, tuple[str, str, str, str]] = {
    "deepseek_r1": ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"),
    "goodfire": ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight", "decoder_linear.bias"),
    "qwen_scope": ("W_enc", "b_enc", "W_dec", "b_dec"),
}
#: Qwen Scope's repository names end in ``-W<width>K-L0_<k>`` (the cache folder keeps it).
QWEN_K = re.compile(r"-W\d+K-L0_(\d+)(?:$|/)")


class PtFileFormat:
    """Read (only) single-file ``torch.save`` SAE state dicts in SAELens's pretrained layouts."""

    name = "pt_file"

    def detect(self, path: str) -> bool:
        file = Path(path)
        if not file.is_file() or file.suffix.lower() not in SUFFIXES:
            return False
        if file.name == "ae.pt" and (file.parent / "config.json").is_file():
            return False  # a dictionary_learning folder's weights, read by that format
        try:
            with zipfile.ZipFile(file) as archive:
                return any(n.endswith("/data.pkl") and n.count("/") == 1 for n in archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return False  # a plain pickle: refused by name by the loader

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, k: int | None = None,
             **_: Any) -> SparseAutoencoder:
        file = Path(path)
        shapes = _read(file, torch_archive.shapes)
        family = _family(shapes, file)
        enc_w, enc_b, dec_w, dec_b = LAYOUTS[family]
        d_sae, d_in = _shape(shapes, enc_w, 2, file)
        for name, want in ((enc_b, (d_sae,)), (dec_w, (d_in, d_sae)), (dec_b, (d_in,))):
            found = _shape(shapes, name, len(want), file)
            if found != want:
                raise FeaturelensError(
                    f"{name} in {file} has shape {list(found)}, but {enc_w} {[d_sae, d_in]} implies {list(want)}; "
                    "the file's tensors are from different dictionaries.")
        options: dict[str, Any] = {"apply_b_dec_to_input": False, "hookpoint": None, "model_id": None}
        architecture = "relu"
        if family == "qwen_scope":
            architecture = "topk"
            options["k"] = _qwen_k(k, file, d_sae)
        state = _read(file, torch_archive.read)  # shapes are known good: now the weights
        tensors = {"W_enc": state[enc_w].T, "b_enc": state[enc_b], "W_dec": state[dec_w].T, "b_dec": state[dec_b]}
        del state
        model = build(architecture, d_in, d_sae, options, tensors, dtype=parse_dtype(dtype, file) or torch.float32,
                      source=file)
        model.format = self.name
        model.config["saelens_layout"] = family
        return model.to(device) if device else model

    def save(self, dictionary: Any, path: str) -> None:
        raise FeaturelensError(
            "featurelens reads single-file .pt SAE state dicts but does not write them; "
            "export as saelens, sparsify or featurelens.")


def _read(file: Path, reader: Any) -> dict[Any, Any]:
    """The file's mapping (``reader`` is torch_archive's ``shapes`` or ``read``), or one sentence.
    Entries beside the layout's four tensors are ignored, as SAELens's loaders ignore them."""
    try:
        state = reader(file)
    except torch_archive.UnsafeObject as error:
        raise FeaturelensError(
            f"{file} contains objects other than tensors (it names {str(error)[:120]}), and featurelens never "
            "unpickles a checkpoint; save the state dict alone (torch.save(sae.state_dict(), ...)).") from None
    except Exception as error:  # noqa: BLE001 - a damaged archive fails in zipfile, zlib or the reader
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise FeaturelensError(f"{file} is not a readable PyTorch file ({first}); re-download it.") from None
    if not isinstance(state, dict):
        raise FeaturelensError(f"{file} holds a {type(state).__name__}, not a state dict; save sae.state_dict() alone.")
    return state


def _family(shapes: dict[Any, Any], file: Path) -> str:
    """Which of :data:`LAYOUTS` the file's keys are (their shapes decide nothing here)."""
    for family, names in LAYOUTS.items():
        if set(names) <= set(shapes):
            return family
    held = ", ".join(sorted(map(str, shapes))[:8]) or "nothing"
    raise FeaturelensError(
        f"{file} is a torch.save state dict holding {held}, which is none of the SAE layouts featurelens reads "
        f"from a single .pt file ({', '.join(' + '.join(LAYOUTS[f][::2]) for f in LAYOUTS)}); save it as "
        "safetensors in SAELens's format instead.")


def _shape(shapes: dict[Any, Any], name: str, dims: int, file: Path) -> tuple[int, ...]:
    tensor = shapes[name]
    if not isinstance(tensor, torch.Tensor):
        raise FeaturelensError(
            f"{name} in {file} is a {type(tensor).__name__}, not a tensor; the file is not an SAE state dict.")
    if tensor.dim() != dims or not tensor.is_floating_point():
        raise FeaturelensError(
            f"{name} in {file} is a {tensor.dim()}-d {tensor.dtype} tensor, not the {dims}-d floating point "
            "weights an SAE has; the file is not an SAE state dict.")
    return tuple(tensor.shape)


def _qwen_k(k: int | None, file: Path, d_sae: int) -> int:
    """Qwen Scope's top-k: the ``k`` passed, else the ``L0_<k>`` of the cache folder's repository name."""
    if k is None:
        found = QWEN_K.search(file.as_posix())
        k = int(found[1]) if found else None
    if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= d_sae:
        raise FeaturelensError(
            f"{file} is a Qwen Scope TopK SAE, whose k is in its repository's name (L0_<k>), not in the file, and "
            f"no k in 1..{d_sae} was found; load it by its SAELens name (saelens:qwen-scope-.../layerN) or pass k.")
    return k
