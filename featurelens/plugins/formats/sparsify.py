"""EleutherAI sparsify checkpoints: one folder per hookpoint, each with ``cfg.json`` and
``sae.safetensors`` (``encoder.weight [n, d_in]``, ``encoder.bias``, ``W_dec [n, d_in]``,
``b_dec``, optional ``W_skip``).

sparsify encodes as ``topk(relu(F.linear(x - b_dec, W, b)), k)`` (no ``b_dec``
subtraction for transcoders) in the weights' own dtype, often bfloat16; we keep that
dtype unless ``dtype=`` asks otherwise and compute the same way (bias inside the
matmul, ReLU before the top-k), so codes match sparsify's bit for bit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.common import (
    as_sae,
    atomic_folder,
    build,
    config_int,
    parse_dtype,
    read_json,
    read_safetensors,
    require,
    save_safetensors,
    write_json,
)
from featurelens.plugins.formats.headers import shape_of
from featurelens.plugins.formats.strict import (
    config_bool,
    positive_factor,
    refuse_unknown_tensors,
)

CFG = "cfg.json"
WEIGHTS = "sae.safetensors"


def _is_hookpoint_dir(folder: Path) -> bool:
    return (folder / CFG).is_file() and (folder / WEIGHTS).is_file()


def hookpoint_dirs(root: Path) -> list[Path]:
    """The hookpoint folders under ``root`` (``root`` itself if it is one)."""
    if _is_hookpoint_dir(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _is_hookpoint_dir(p))


def to_transformerlens(name: str, transcode: bool) -> str | None:
    """sparsify names modules of the base model (``layers.6``); we use TransformerLens
    names. Returns ``None`` where there is no unambiguous equivalent."""
    match = re.fullmatch(r"(?:model\.)?layers\.(\d+)(\.mlp)?", name)
    if not match:
        return None
    layer, mlp = match.groups()
    if mlp and transcode:
        return f"blocks.{layer}.ln2.hook_normalized"
    if mlp:
        return f"blocks.{layer}.hook_mlp_out"
    return f"blocks.{layer}.hook_resid_post"


def from_transformerlens(hookpoint: str | None) -> str:
    if not hookpoint:
        return "sae"
    match = re.fullmatch(r"blocks\.(\d+)\.(hook_resid_post|hook_mlp_out|ln2\.hook_normalized)", hookpoint)
    if not match:
        return hookpoint
    layer, kind = match.groups()
    return f"layers.{layer}" if kind == "hook_resid_post" else f"layers.{layer}.mlp"


def pick_hookpoint_dir(root: Path, folders: list[Path], hookpoint: str | None) -> Path:
    """The folder of a multi-hookpoint sparsify root that reads ``hookpoint`` (given in
    TransformerLens or sparsify naming), or one sentence listing what the root holds."""
    names = [f.name for f in folders]
    if hookpoint:
        wanted = {hookpoint, from_transformerlens(hookpoint), hookpoint.removeprefix("model.")}
        chosen = [f for f in folders if f.name in wanted or to_transformerlens(f.name, False) == hookpoint
                  or to_transformerlens(f.name, True) == hookpoint]
        if len(chosen) == 1:
            return chosen[0]
        raise FeaturelensError(
            f"{root} holds sparsify dictionaries for {', '.join(names)}, none of which reads {hookpoint}; "
            f"pass --hookpoint {to_transformerlens(names[0], False) or names[0]} (or another of those), "
            "or the folder of the one you want.")
    raise FeaturelensError(
        f"{root} holds sparsify dictionaries for {len(names)} hookpoints ({', '.join(names)}); "
        f"pass --hookpoint to pick one (e.g. --hookpoint {to_transformerlens(names[0], False) or names[0]}) "
        f"or the folder of the one you want, e.g. {folders[0]}.")


class SparsifyFormat:
    """Read and write EleutherAI sparsify's on-disk format."""

    name = "sparsify"

    def detect(self, path: str) -> bool:
        return bool(hookpoint_dirs(Path(path)))

    def load(self, path: str, *, hookpoint: str | None = None, dtype: Any = None,
             device: str | None = None, **_: Any) -> SparseAutoencoder:
        root = Path(path)
        folders = hookpoint_dirs(root)
        if len(folders) > 1:
            folders = [pick_hookpoint_dir(root, folders, hookpoint)]
        folder = folders[0]
        cfg = read_json(folder / CFG, "sparsify")
        if "architecture" in cfg and "d_sae" in cfg:
            raise FeaturelensError(
                f"{folder / CFG} is a SAELens config, yet the folder holds sparsify weights "
                f"({WEIGHTS}); the folder mixes two formats."
            )
        activation = cfg.get("activation", "topk")
        if activation != "topk":
            raise FeaturelensError(
                f"{folder} uses sparsify's {activation!r} activation; featurelens reads TopK sparsify "
                "dictionaries only."
            )
        tensors = read_safetensors(folder / WEIGHTS, "sparsify")
        src = folder / WEIGHTS
        if "encoder.weight" not in tensors:
            require(tensors, "encoder.weight", (0, 0), src, "sparsify")
        if len(shape_of(tensors, "encoder.weight")) != 2:
            raise FeaturelensError(f"encoder.weight in {src} must be a matrix [num_latents, d_in], "
                                   f"not {list(shape_of(tensors, 'encoder.weight'))}.")
        n_latents, d_in = shape_of(tensors, "encoder.weight")
        if "d_in" in cfg and config_int(cfg, "d_in", folder / CFG, "sparsify") != d_in:
            raise FeaturelensError(
                f"{folder / CFG} says d_in={cfg['d_in']}, but encoder.weight reads vectors of width "
                f"{d_in}; the weights and the config are from different dictionaries."
            )
        declared = config_int(cfg, "num_latents", folder / CFG, "sparsify") if "num_latents" in cfg else 0
        if declared == 0:
            factor = cfg.get("expansion_factor")
            if factor is None:
                raise FeaturelensError(
                    f"{folder / CFG} has num_latents 0 and no positive expansion_factor, so its "
                    "width is unknown; set num_latents."
                )
            declared = int(d_in * positive_factor(factor, "expansion_factor", folder / CFG))
        if declared != n_latents:
            raise FeaturelensError(
                f"{folder / CFG} implies {declared} latents, but encoder.weight has {n_latents}; "
                "the weights and the config are from different dictionaries."
            )
        transcode = config_bool(cfg, "transcode", False, folder / CFG)
        skip = config_bool(cfg, "skip_connection", False, folder / CFG)
        w_dec_shape = shape_of(tensors, "W_dec") if "W_dec" in tensors else ()
        d_out = w_dec_shape[-1] if len(w_dec_shape) == 2 else d_in
        state = {
            "W_enc": require(tensors, "encoder.weight", (n_latents, d_in), src, "sparsify").T,
            "b_enc": require(tensors, "encoder.bias", (n_latents,), src, "sparsify"),
            "W_dec": require(tensors, "W_dec", (n_latents, d_out), src, "sparsify"),
            "b_dec": require(tensors, "b_dec", (d_out,), src, "sparsify"),
        }
        if skip:
            state["W_skip"] = require(tensors, "W_skip", (d_out, d_in), src, "sparsify")
        refuse_unknown_tensors(tensors, ["encoder.weight", "encoder.bias", "W_dec", "b_dec"]
                               + (["W_skip"] if skip else []), src, "sparsify")
        options: dict[str, Any] = {
            "k": config_int(cfg, "k", folder / CFG, "sparsify"),
            "hookpoint": to_transformerlens(folder.name, transcode),
            "apply_b_dec_to_input": not transcode,
        }
        if skip:
            options["skip"] = True
        if transcode:
            options.update(activation="topk", d_out=d_out)
        model = build("transcoder" if transcode else "topk", d_in, n_latents, options, state,
                      dtype=parse_dtype(dtype, folder), source=folder)
        model.format = self.name
        model.config["sparsify_hookpoint"] = folder.name
        # Encode as sparsify does: F.linear (see encoder_matmul), then top-k of relu(pre-acts).
        model.config.update(fused_bias=True, relu_first=True)
        return model.to(device) if device else model

    def save(self, dictionary: Any, path: str) -> None:
        """Write ``path/<hookpoint>/{cfg.json, sae.safetensors}`` (sparsify's layout)."""
        sae = as_sae(dictionary, "sparsify")
        kind = sae.config.get("activation") if sae.is_transcoder else sae.architecture
        if kind != "topk" or sae.rescale_acts_by_decoder_norm:
            raise FeaturelensError(
                f"sparsify stores TopK dictionaries only; this one is {kind}"
                f"{' with decoder-norm rescaling' if sae.rescale_acts_by_decoder_norm else ''}; "
                "export it as saelens or featurelens."
            )
        if sae.apply_b_dec_to_input == sae.is_transcoder:
            raise FeaturelensError(
                "sparsify subtracts b_dec from the input of SAEs and never of transcoders; "
                "this dictionary does the opposite, so export it as saelens or featurelens."
            )
        if sae.d_out != sae.d_in:
            raise FeaturelensError(
                f"sparsify transcoders write vectors as wide as they read ({sae.d_in}), "
                f"this one writes {sae.d_out}; export it as featurelens."
            )
        name = sae.config.get("sparsify_hookpoint") or from_transformerlens(sae.hookpoint)
        cfg = {
            "activation": "topk", "expansion_factor": sae.d_sae // sae.d_in,
            "normalize_decoder": True, "num_latents": sae.d_sae, "k": sae.k, "multi_topk": False,
            "skip_connection": sae.W_skip is not None, "transcode": sae.is_transcoder, "d_in": sae.d_in,
        }
        tensors = {"encoder.weight": sae.W_enc.T, "encoder.bias": sae.b_enc,
                   "W_dec": sae.W_dec, "b_dec": sae.b_dec}
        if sae.W_skip is not None:
            tensors["W_skip"] = sae.W_skip
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        with atomic_folder(root / name) as tmp:
            save_safetensors(tensors, tmp / WEIGHTS)
            write_json(cfg, tmp / CFG)
