"""SAELens checkpoints: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

Reads SAELens 6 configs (``architecture`` + ``metadata``) and the flat ones written
before 6.0 (:func:`flat_config`: ``hook_point`` for ``hook_name``, ``activation_fn_str``
with ``activation_fn_kwargs.k`` for TopK, a boolean ``normalize_activations``, and
training keys such as ``expansion_factor`` that every pre-6 training config carries). Encoding follows
SAELens: ``act((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc)``, with TopK's
pre-activations multiplied by the decoder norms when ``rescale_acts_by_decoder_norm``
is set (read from the file: the default differs between SAELens's training and
inference configs) and JumpReLU's ``relu(h) * (h > threshold)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import (
    as_sae,
    atomic_folder,
    build,
    config_int,
    decoder_slice,
    dtype_name,
    parse_dtype,
    read_json,
    read_safetensors,
    require_shape,
    save_safetensors,
    write_json,
)
from featurelens.plugins.formats.strict import (
    config_bool,
    config_name,
    config_str,
    refuse_unknown_tensors,
)

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"

#: SAELens architecture -> (our architecture, transcoder activation or None)
_ARCHITECTURES = {
    "standard": ("relu", None), "topk": ("topk", None), "jumprelu": ("jumprelu", None),
    "transcoder": ("transcoder", "relu"), "skip_transcoder": ("transcoder", "relu"),
    "jumprelu_transcoder": ("transcoder", "jumprelu"),
}


def flat_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config written before SAELens 6 in the 6.0 shape, with the defaults SAELens fills
    for such files (``apply_b_dec_to_input`` true, ``standard`` architecture)."""
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    version = str(cfg.get("sae_lens_version") or meta.get("sae_lens_version") or "")
    if (meta and "architecture" in cfg) or (version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 6):
        return cfg  # SAELens 6
    out = dict(cfg)
    if "hook_point" in out and "hook_name" not in out:
        out["hook_name"] = out["hook_point"]
    activation = out.get("activation_fn_str") or out.get("activation_fn") or "relu"
    kwargs = out.get("activation_fn_kwargs") if isinstance(out.get("activation_fn_kwargs"), dict) else {}
    out.setdefault("apply_b_dec_to_input", True)
    if "architecture" not in out:
        out["architecture"] = "topk" if activation == "topk" and kwargs.get("k") is not None else "standard"
        if activation not in ("relu", "topk"):
            raise FeaturelensError(
                f"The SAELens config gives activation_fn_str={activation!r}, which featurelens cannot "
                "reproduce; supported before SAELens 6: relu, topk.")
    if out["architecture"] == "topk" and "k" not in out:
        out["k"] = kwargs.get("k")
    if isinstance(out.get("normalize_activations"), bool):
        out["normalize_activations"] = "expected_average_only_in" if out["normalize_activations"] else "none"
    if out.get("finetuning_scaling_factor"):
        raise FeaturelensError(
            "The SAELens config sets finetuning_scaling_factor, a learned per-feature scale featurelens does "
            "not reproduce; load it with SAELens and save it again without it.")
    return out


class SAELensFormat:
    """Read and write SAELens's on-disk format."""

    name = "saelens"

    def detect(self, path: str) -> bool:
        folder = Path(path)
        return folder.is_dir() and (folder / CFG).is_file() and (folder / WEIGHTS).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> SparseAutoencoder:
        folder = Path(path)
        cfg = read_json(folder / CFG, "SAELens")
        if "num_latents" in cfg and "d_sae" not in cfg:
            raise FeaturelensError(
                f"{folder / CFG} is a sparsify config (num_latents, no d_sae), yet the folder holds "
                "SAELens weights; the folder mixes two formats."
            )
        try:
            cfg = flat_config(cfg)
        except FeaturelensError as error:
            raise FeaturelensError(f"{folder / CFG}: {error}") from None
        architecture = cfg.get("architecture", "standard")
        if isinstance(architecture, str) and architecture not in _ARCHITECTURES:
            raise FeaturelensError(
                f"{folder} is a SAELens {architecture!r} SAE, which featurelens cannot load; "
                f"supported: {', '.join(_ARCHITECTURES)}."
            )
        config_name(architecture, "architecture", _ARCHITECTURES, folder / CFG)
        norm = cfg.get("normalize_activations") or "none"
        if norm != "none":
            raise FeaturelensError(
                f"{folder} normalises activations with {norm!r} at run time, which featurelens does "
                "not reproduce; fold the scaling into the weights (SAELens: fold_activation_norm_"
                "scaling_factor) and save again with normalize_activations='none'."
            )
        ours, activation = _ARCHITECTURES[architecture]
        d_in = config_int(cfg, "d_in", folder / CFG, "SAELens")
        d_sae = config_int(cfg, "d_sae", folder / CFG, "SAELens")
        transcoder = ours == "transcoder"
        d_out = config_int(cfg, "d_out", folder / CFG, "SAELens") if transcoder and "d_out" in cfg else d_in
        tensors = read_safetensors(folder / WEIGHTS, "SAELens")
        src = folder / WEIGHTS
        # shapes come from the header; each tensor is read once, when build() takes it
        names = {require_shape(tensors, "W_enc", (d_in, d_sae), src, "SAELens"),
                 require_shape(tensors, "b_enc", (d_sae,), src, "SAELens"),
                 require_shape(tensors, "W_dec", (d_sae, d_out), src, "SAELens"),
                 require_shape(tensors, "b_dec", (d_out,), src, "SAELens")}
        apply_b_dec = config_bool(cfg, "apply_b_dec_to_input", not transcoder, folder / CFG) and not transcoder
        options: dict[str, Any] = {"apply_b_dec_to_input": apply_b_dec}
        if ours == "topk" or activation == "topk":
            options["k"] = config_int(cfg, "k", folder / CFG, "SAELens")
            options["rescale_acts_by_decoder_norm"] = config_bool(cfg, "rescale_acts_by_decoder_norm", False,
                                                                  folder / CFG)
        if ours == "jumprelu" or activation == "jumprelu":
            names.add(require_shape(tensors, "threshold", (d_sae,), src, "SAELens"))
        if transcoder:
            options.update(activation=activation, d_out=d_out, skip=architecture == "skip_transcoder")
            if architecture == "skip_transcoder":
                names.add(require_shape(tensors, "W_skip", (d_out, d_in), src, "SAELens"))
        state = tensors.subset(names)
        refuse_unknown_tensors(tensors, state, src, "SAELens")
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else cfg
        hookpoint = config_str(meta.get("hook_name") or cfg.get("hook_point") or cfg.get("hook_name"),
                               "hook_name", folder / CFG)
        model_id = config_str(meta.get("model_name") or cfg.get("model_name"), "model_name", folder / CFG)
        if transcoder and meta.get("hook_name_out", cfg.get("hook_name_out")):
            options["hookpoint_out"] = meta.get("hook_name_out", cfg.get("hook_name_out"))
        options.update(hookpoint=hookpoint, model_id=model_id)
        want = parse_dtype(dtype, folder) or parse_dtype(cfg.get("dtype"), folder / CFG)
        model = build(ours, d_in, d_sae, options, state, dtype=want, source=folder)
        sparsity = folder / SPARSITY
        if sparsity.is_file():
            log_density = read_safetensors(sparsity, "SAELens").get("sparsity")
            if log_density is not None and tuple(log_density.shape) == (d_sae,):
                model.log_feature_density = log_density
        model.format = self.name
        if isinstance(meta.get("featurelens_training"), dict):
            model.config.update(meta["featurelens_training"])
        return model.to(device) if device else model

    def decoder_rows(self, path: str, features: torch.Tensor) -> torch.Tensor | None:
        """Rows ``features`` of ``decoder_directions()`` without loading the dictionary: ``W_dec``
        sliced from the weights file, in the dtype :meth:`load` gives it."""
        folder = Path(path)
        cfg = flat_config(read_json(folder / CFG, "SAELens"))
        d_sae = config_int(cfg, "d_sae", folder / CFG, "SAELens")
        return decoder_slice(folder / WEIGHTS, "W_dec", d_sae, features,
                             parse_dtype(cfg.get("dtype"), folder / CFG), "SAELens")

    def save(self, dictionary: Any, path: str) -> None:
        sae = as_sae(dictionary, "SAELens")
        architecture, tensors = _saelens_tensors(sae)
        cfg: dict[str, Any] = {
            "architecture": architecture, "d_in": sae.d_in, "d_sae": sae.d_sae,
            "dtype": dtype_name(sae.W_enc.dtype), "device": "cpu",
            "apply_b_dec_to_input": sae.apply_b_dec_to_input,
            "normalize_activations": "none", "reshape_activations": "none",
            "metadata": {
                "model_name": sae.model_id, "hook_name": sae.hookpoint,
                "sae_lens_training_version": None, "exported_by": f"featurelens {featurelens.__version__}",
            },
        }
        training = {k: sae.config[k] for k in ("lr", "training_data") if k in sae.config}
        if training:  # how featurelens trained it (SAELens readers ignore unknown metadata)
            cfg["metadata"]["featurelens_training"] = training
        if architecture == "topk":
            cfg["k"] = sae.k
            cfg["rescale_acts_by_decoder_norm"] = sae.rescale_acts_by_decoder_norm
        if sae.is_transcoder:
            cfg["d_out"] = sae.d_out
            cfg["hook_name_out"] = sae.config.get("hookpoint_out") or ""
        with atomic_folder(Path(path)) as tmp:
            save_safetensors(tensors, tmp / WEIGHTS)
            write_json(cfg, tmp / CFG)


def _saelens_tensors(sae: SparseAutoencoder) -> tuple[str, dict[str, torch.Tensor]]:
    """The SAELens architecture name and tensors that encode exactly like ``sae``."""
    tensors = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    kind = sae.config.get("activation") if sae.is_transcoder else sae.architecture
    if sae.is_transcoder:
        if kind not in ("relu", "jumprelu") or sae.rescale_acts_by_decoder_norm:
            raise FeaturelensError(
                f"SAELens has no {kind} transcoder, so this transcoder cannot be saved as SAELens; "
                "export it as sparsify (TopK transcoders) or featurelens instead."
            )
        if sae.W_skip is not None:
            if kind != "relu":
                raise FeaturelensError(
                    "SAELens has no JumpReLU transcoder with a skip connection; export it as featurelens."
                )
            tensors["W_skip"] = sae.W_skip
            return "skip_transcoder", tensors
        if kind == "jumprelu":
            tensors["threshold"] = sae.threshold
            return "jumprelu_transcoder", tensors
        return "transcoder", tensors
    if sae.W_skip is not None:
        raise FeaturelensError("SAELens SAEs have no skip connection; export this one as featurelens.")
    if kind == "topk":
        return "topk", tensors
    if kind == "relu":
        return "standard", tensors
    if kind in ("jumprelu", "batchtopk"):
        # BatchTopK's inference rule is a JumpReLU with one shared threshold.
        extra = sae.extra_state_for_save()
        tensors["threshold"] = extra.get("threshold", getattr(sae, "threshold", None))
        if sae.rescale_acts_by_decoder_norm:
            raise FeaturelensError(
                "SAELens's JumpReLU does not rescale by decoder norms; export this dictionary as featurelens."
            )
        return "jumprelu", tensors
    raise FeaturelensError(
        f"There is no SAELens architecture for a {kind} dictionary; export it as featurelens."
    )
