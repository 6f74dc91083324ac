"""Transcoder sets on disk: featurelens's own set folder and circuit-tracer's layouts.

- ``transcoder_set`` (read/write): ``transcoder_set.json`` naming, per layer, a folder
  or a dictionary name (``layer_3/``, ``saelens:<release>/<sae_id>``, ``hf:<repo>/<folder>``)
  that any registered format reads, plus ``cross_decoders.safetensors`` for a
  cross-layer set. A set of SAELens or Gemma Scope transcoders is such a file listing
  their names; ``featurelens train --layers`` writes one around the layers it trained.
- ``circuit_tracer`` (read; write for per-layer sets): circuit-tracer's ``config.yaml``
  (``model_kind: transcoder_set`` with one safetensors file per layer, or
  ``cross_layer_transcoder``), and a bare cross-layer folder of ``W_enc_{l}`` /
  ``W_dec_{l}`` files. A per-layer file holds ``W_enc [d_transcoder, d_model]``,
  ``b_enc``, ``W_dec [d_transcoder, d_model]``, ``b_dec``, optional
  ``activation_function.threshold`` (JumpReLU, else ReLU) and ``W_skip``; Gemma Scope 2
  files (``w_enc [d_model, d_transcoder]``, ``w_dec``, ``threshold``,
  ``affine_skip_connection``) are told apart by their names.

Every file's shapes are read from its header and checked before its data is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_layout import MANIFEST, write_manifest
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.core.transcoder_set import TranscoderSet
from featurelens.plugins.formats.common import (
    atomic_folder, build, parse_dtype, read_json, read_safetensors, save_safetensors,
)
from featurelens.plugins.formats.headers import shape_of

CROSS = "cross_decoders.safetensors"
CT_CONFIG = "config.yaml"

#: circuit-tracer's hook names (inside a block) -> ours.
CT_HOOKS = {"mlp.hook_in": "ln2.hook_normalized", "hook_mlp_in": "ln2.hook_normalized",
            "ln2.hook_normalized": "ln2.hook_normalized", "hook_resid_mid": "hook_resid_mid",
            "hook_mlp_out": "hook_mlp_out", "mlp.hook_out": "hook_mlp_out", "hook_resid_pre": "hook_resid_pre"}
OUR_TO_CT = {"ln2.hook_normalized": "mlp.hook_in", "hook_mlp_in": "mlp.hook_in", "hook_resid_mid": "hook_resid_mid",
             "hook_mlp_out": "hook_mlp_out", "hook_resid_pre": "hook_resid_pre"}


#: Gemma Scope 2 keeps each transcoder as one file in its own folder.
GS2_PARAMS = "params.safetensors"


def load_any(spec: str, *, base: Path, dtype: Any = None) -> Any:
    """One layer's transcoder from a folder or file (relative to ``base``) or a name: whatever a
    registered format reads, a Gemma Scope 2 folder (``params.safetensors``), or a
    circuit-tracer per-layer file."""
    from featurelens.core.host.manager import get_registry
    from featurelens.core.dictionaries.pretrained import is_named, resolve

    path = Path(resolve(spec)[0]) if is_named(spec) else (base / spec)
    if not path.exists():
        raise FeaturelensError(f"The layer transcoder {spec!r} does not exist (looked for {path}); restore "
                               "the layer's folder or fix the name.")
    if path.is_dir() and (path / GS2_PARAMS).is_file():
        path = path / GS2_PARAMS  # a layer of a set is a transcoder, whatever its folder is named
    registry = get_registry()
    for name in registry.names("dictionary_format"):
        if name in ("transcoder_set", "circuit_tracer"):
            continue
        fmt = registry.get("dictionary_format", name).create()
        if fmt.detect(str(path)):
            return fmt.load(str(path), dtype=dtype)
    if path.is_file() and path.suffix == ".safetensors":
        return per_layer_file(path, {}, dtype=dtype)
    raise FeaturelensError(f"No dictionary format recognises {path}, named for a layer of a transcoder set; "
                           "point it at a saved transcoder.")


class TranscoderSetFormat:
    """featurelens's set folder: a manifest naming each layer's transcoder."""

    name = "transcoder_set"

    def detect(self, path: str) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None, **_: Any) -> TranscoderSet:
        folder = Path(path)
        manifest = read_json(folder / MANIFEST, "transcoder set")
        layers = manifest.get("layers")
        if not isinstance(layers, dict) or not layers:
            raise FeaturelensError(f"{folder / MANIFEST} has no 'layers' object mapping layer numbers to "
                                   "transcoders; it was not written by featurelens.")
        transcoders: dict[int, SparseAutoencoder] = {}
        for key, spec in layers.items():
            if not str(key).isdigit() or not isinstance(spec, str):
                raise FeaturelensError(f"{folder / MANIFEST} maps {key!r} to {spec!r}; layers are numbers "
                                       "and each names a folder or a dictionary.")
            layer = load_any(spec, base=folder, dtype=dtype)
            if not isinstance(layer, SparseAutoencoder):
                raise FeaturelensError(f"{spec} in {folder / MANIFEST} is a {layer.architecture} dictionary, "
                                       "not a transcoder.")
            transcoders[int(key)] = layer
        cross = _read_cross(folder / CROSS, dtype) if (folder / CROSS).is_file() else None
        result = TranscoderSet(transcoders, input_hook=str(manifest.get("input_hook", "ln2.hook_normalized")),
                               output_hook=str(manifest.get("output_hook", "hook_mlp_out")),
                               cross_decoders=cross, model_id=manifest.get("model_id"),
                               config={k: v for k, v in manifest.items() if k in ("dictionary_id", "source")})
        if manifest.get("dictionary_id"):
            result.dictionary_id = manifest["dictionary_id"]
        result.format = self.name
        return result.to(device) if device else result

    def save(self, dictionary: Any, path: str) -> None:
        save_set(dictionary, Path(path))


def save_set(dictionary: TranscoderSet, path: Path) -> None:
    """Each layer in featurelens's own format under ``layer_<l>/``, the manifest beside them."""
    from featurelens.plugins.formats.native import save_native

    if not isinstance(dictionary, TranscoderSet):
        raise FeaturelensError("The transcoder_set format stores transcoder sets; save a single "
                               "dictionary with saelens or featurelens instead.")
    with atomic_folder(path) as tmp:
        for layer in dictionary.layout.layers:
            save_native(dictionary.transcoder(layer), tmp / f"layer_{layer}")
        if dictionary.cross:
            save_safetensors({str(s): getattr(dictionary, n) for s, n in dictionary.cross.items()}, tmp / CROSS)
        layout = dictionary.layout
        write_manifest(tmp, {l: f"layer_{l}" for l in layout.layers}, input_hook=layout.input_hook,
                       output_hook=layout.output_hook, model_id=dictionary.model_id,
                       dictionary_id=getattr(dictionary, "dictionary_id", None)
                       or dictionary.config.get("dictionary_id"))


def _read_cross(path: Path, dtype: Any) -> dict[int, torch.Tensor]:
    tensors = read_safetensors(path, "transcoder set")
    out = {}
    for name in tensors:
        if not name.isdigit():
            raise FeaturelensError(f"{path} holds {name!r}; a set's cross decoders are named by source layer.")
        out[int(name)] = tensors[name].to(parse_dtype(dtype, path) or tensors[name].dtype)
    return out


# -- circuit-tracer ---------------------------------------------------------------
def _shape(tensors: Mapping[str, torch.Tensor], name: str, source: Path) -> tuple[int, ...]:
    if name not in tensors:
        raise FeaturelensError(f"{source} has no tensor {name!r} (it has: {', '.join(sorted(tensors))}); "
                               "it is not a complete transcoder file.")
    return shape_of(tensors, name)


def per_layer_file(path: Path, config: Mapping[str, Any], *, dtype: Any = None) -> SparseAutoencoder:
    """One layer's transcoder from a circuit-tracer (or Gemma Scope 2) safetensors file."""
    tensors = read_safetensors(path, "circuit-tracer")
    gs2 = "w_enc" in tensors
    names = ({"W_enc": "w_enc", "W_dec": "w_dec", "b_enc": "b_enc", "b_dec": "b_dec", "threshold": "threshold",
              "W_skip": "affine_skip_connection"} if gs2 else
             {"W_enc": "W_enc", "W_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec",
              "threshold": "activation_function.threshold", "W_skip": "W_skip"})
    enc = _shape(tensors, names["W_enc"], path)
    if len(enc) != 2:
        raise FeaturelensError(f"{names['W_enc']} in {path} must be a matrix, not {list(enc)}.")
    d_sae, d_model = (enc[1], enc[0]) if gs2 else enc
    expected = {"W_dec": (d_sae, d_model), "b_enc": (d_sae,), "b_dec": (d_model,)}
    has_threshold = names["threshold"] in tensors
    has_skip = names["W_skip"] in tensors
    if has_threshold:
        expected["threshold"] = (d_sae,)
    if has_skip:
        expected["W_skip"] = (d_model, d_model)
    for ours, shape in expected.items():
        found = _shape(tensors, names[ours], path)
        if found != shape:
            raise FeaturelensError(f"{names[ours]} in {path} has shape {list(found)} but its W_enc implies "
                                   f"{list(shape)}; the file mixes two transcoders.")
    used = {names[k] for k in ("W_enc", *expected)}
    extra = sorted(set(tensors) - used)
    if extra:
        raise FeaturelensError(f"{path} holds {', '.join(extra)}, which a circuit-tracer transcoder does not "
                               "use; featurelens cannot encode as the file's writer did.")
    state = {"W_enc": tensors[names["W_enc"]] if gs2 else tensors[names["W_enc"]].T.contiguous()}
    for ours in expected:
        tensor = tensors[names[ours]]
        state[ours] = tensor.T.contiguous() if (ours == "W_skip" and gs2) else tensor
    activation = str(config.get("activation") or ("jumprelu" if has_threshold else "relu")).replace("_", "")
    options: dict[str, Any] = {"activation": activation, "skip": has_skip, "apply_b_dec_to_input": False}
    if activation == "topk":
        options["k"] = config.get("k")
    if activation == "jumprelu" and not has_threshold:
        raise FeaturelensError(f"{path} is configured as JumpReLU but holds no threshold; re-export it.")
    if activation != "jumprelu":
        state.pop("threshold", None)
    return build("transcoder", d_model, d_sae, options, state, dtype=parse_dtype(dtype, path), source=path)


class CircuitTracerFormat:
    """circuit-tracer's transcoder layouts (per-layer files, cross-layer ``W_enc_{l}``/``W_dec_{l}``)."""

    name = "circuit_tracer"

    def detect(self, path: str) -> bool:
        folder = Path(path)
        if folder.is_file():
            return _single_file_kind(folder) is not None
        return (folder / CT_CONFIG).is_file() or (folder / "W_enc_0.safetensors").is_file()

    def load(self, path: str, *, dtype: Any = None, device: str | None = None,
             **_: Any) -> TranscoderSet | SparseAutoencoder:
        folder = Path(path)
        if folder.is_file():
            kind = _single_file_kind(folder)
            one = clt_layer(folder, dtype) if kind == "clt_layer" else per_layer_file(folder, {}, dtype=dtype)
            one.format = self.name
            return one.to(device) if device else one
        config = _read_yaml(folder / CT_CONFIG) if (folder / CT_CONFIG).is_file() else {
            "model_kind": "cross_layer_transcoder"}
        kind = config.get("model_kind", "transcoder_set")
        hooks = {}
        for key, default in (("feature_input_hook", "mlp.hook_in"), ("feature_output_hook", "hook_mlp_out")):
            value = config.get(key, default)
            if value not in CT_HOOKS:
                raise FeaturelensError(f"{folder / CT_CONFIG} gives {key}={value!r}, which featurelens does not "
                                       f"map to a hookpoint; supported: {', '.join(CT_HOOKS)}.")
            hooks[key] = CT_HOOKS[value]
        if kind == "transcoder_set":
            layers = {layer: per_layer_file(path, config, dtype=dtype)
                      for layer, path in enumerate(_layer_files(folder, config))}
            cross = None
        elif kind == "cross_layer_transcoder":
            layers, cross = _load_clt(folder, dtype)
        else:
            raise FeaturelensError(f"{folder / CT_CONFIG} has model_kind={kind!r}; featurelens reads "
                                   "transcoder_set and cross_layer_transcoder.")
        result = TranscoderSet(layers, input_hook=hooks["feature_input_hook"],
                               output_hook=hooks["feature_output_hook"], cross_decoders=cross,
                               config={"circuit_tracer_scan": config.get("scan")} if config.get("scan") else None)
        result.format = self.name
        return result.to(device) if device else result

    def save(self, dictionary: Any, path: str) -> None:
        save_circuit_tracer(dictionary, Path(path))


def _single_file_kind(path: Path) -> str | None:
    """What one safetensors file is, from its name and header: ``clt_layer`` (a cross-layer
    transcoder's ``W_enc_{l}`` with its ``W_dec_{l}`` beside it), ``layer`` (a per-layer
    transcoder: ``W_enc`` and ``W_dec`` both ``[d_transcoder, d_model]``, or Gemma Scope 2's
    ``w_enc``), or None (SAELens's ``sae_weights`` has ``W_enc [d_in, d_sae]``)."""
    from featurelens.plugins.formats.headers import safetensors_header

    if path.suffix != ".safetensors":
        return None
    match = re.fullmatch(r"W_enc_(\d+)\.safetensors", path.name)
    if match:
        return "clt_layer" if (path.parent / f"W_dec_{match.group(1)}.safetensors").is_file() else None
    try:
        header = safetensors_header(path)
    except FeaturelensError:
        return None
    if "w_enc" in header and "w_dec" in header:
        return "layer"
    enc, dec = header.get("W_enc"), header.get("W_dec")
    return "layer" if enc and dec and len(enc[0]) == 2 and enc[0] == dec[0] else None


def clt_layer(enc_path: Path, dtype: Any) -> SparseAutoencoder:
    """One layer of a circuit-tracer cross-layer transcoder as a single transcoder, read as
    SAELens's ``mntss_clt_layer_transcoder`` reads it: the layer's encoder, and its decoders
    to every later layer summed into one ``[d_transcoder, d_model]`` write (each feature's
    total write to the residual stream, right for its logit effects; not a reconstruction
    of any one layer's output). JumpReLU when the file holds ``threshold_{l}``, as
    circuit-tracer encodes (SAELens's loader ignores the threshold), else ReLU."""
    layer = int(re.fullmatch(r"W_enc_(\d+)\.safetensors", enc_path.name).group(1))  # type: ignore[union-attr]
    dec_path = enc_path.parent / f"W_dec_{layer}.safetensors"
    enc, dec, d_t, d_model = _clt_layer_files(enc_path, dec_path, layer)
    dec_shape = _shape(dec, f"W_dec_{layer}", dec_path)
    if len(dec_shape) != 3 or dec_shape[0] != d_t or dec_shape[2] != d_model:
        raise FeaturelensError(f"W_dec_{layer} in {dec_path} has shape {list(dec_shape)}, but layer {layer}'s "
                               f"encoder needs [{d_t}, <later layers>, {d_model}].")
    chosen = parse_dtype(dtype, enc_path)
    w_dec = dec[f"W_dec_{layer}"]
    state, options = _clt_encoder_state(enc, layer, d_t, d_model)
    state["W_dec"] = w_dec.to(chosen or w_dec.dtype).sum(dim=1)
    model = build("transcoder", d_model, d_t, options, state, dtype=chosen, source=enc_path)
    model.config["cross_layer_decoders_summed"] = int(dec_shape[1])
    return model


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise FeaturelensError(f"{path} is not valid YAML ({type(error).__name__}); restore circuit-tracer's "
                               "config file.") from None
    if not isinstance(data, dict):
        raise FeaturelensError(f"{path} holds a YAML {type(data).__name__}, not circuit-tracer's config mapping.")
    return data


def _local_file(folder: Path, name: Any, config: Mapping[str, Any]) -> Path:
    """A transcoder file named in config.yaml: a path inside ``folder``, or ``hf://repo/file``
    (inside ``folder`` when it is that repository's snapshot, else from the Hugging Face cache,
    downloaded if missing: circuit-tracer's Gemma Scope 2 configs name Google's files)."""
    from urllib.parse import parse_qs, urlsplit

    from featurelens.core.dictionaries.pretrained import hf_file

    if not isinstance(name, str):
        raise FeaturelensError(f"{folder / CT_CONFIG} lists {name!r} as a transcoder file; it must be a path.")
    if name.startswith("hf://"):
        url = urlsplit(name)
        parts = url.path.lstrip("/").split("/", 1)
        if len(parts) != 2 or not parts[1]:
            raise FeaturelensError(f"{folder / CT_CONFIG} lists {name!r}; write hf://<org>/<repo>/<file>.")
        repo, filename = f"{url.netloc}/{parts[0]}", parts[1]
        for relative in (filename, filename.removeprefix(f"{config.get('subfolder')}/")):
            inside = (folder / relative).resolve()
            if folder.resolve() in inside.parents and inside.is_file():
                return inside
        if parse_qs(url.query).get("revision"):
            raise FeaturelensError(f"{folder / CT_CONFIG} pins {name!r} to a revision, which featurelens does not "
                                   "follow; download that file and list its path instead.")
        return hf_file(repo, filename, f"{name} (listed in {folder / CT_CONFIG})")
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise FeaturelensError(f"{folder / CT_CONFIG} names {name!r}, outside its folder; keep the transcoder "
                               "files inside the set's folder.")
    if not path.is_file():
        raise FeaturelensError(f"{path}, listed in {folder / CT_CONFIG}, is missing; download every layer's file.")
    return path


def _layer_files(folder: Path, config: Mapping[str, Any]) -> list[Path]:
    """The per-layer files: config.yaml's ``transcoders`` list, else ``layer_<i>.safetensors`` from 0."""
    files = config.get("transcoders")
    if files is None:
        found = []
        while (folder / f"layer_{len(found)}.safetensors").is_file():
            found.append(folder / f"layer_{len(found)}.safetensors")
        if not found:
            raise FeaturelensError(f"{folder / CT_CONFIG} lists no 'transcoders' and the folder has no "
                                   "layer_0.safetensors; a per-layer set names one safetensors file per layer.")
        return found
    if not isinstance(files, list) or not files:
        raise FeaturelensError(f"{folder / CT_CONFIG} lists no 'transcoders' files; a per-layer set "
                               "names one safetensors file per layer.")
    return [_local_file(folder, name, config) for name in files]


def _clt_layer_files(enc_path: Path, dec_path: Path, layer: int) -> tuple[dict, dict, int, int]:
    """Layer ``layer``'s cross-layer files read, its encoder tensors checked against
    ``W_enc_{layer}``: ``(encoder tensors, decoder tensors, d_transcoder, d_model)``. The
    decoder's shape is the caller's to check: one layer alone and a whole set expect
    different numbers of later layers."""
    enc = read_safetensors(enc_path, "circuit-tracer")
    dec = read_safetensors(dec_path, "circuit-tracer")
    shape = _shape(enc, f"W_enc_{layer}", enc_path)
    if len(shape) != 2:
        raise FeaturelensError(f"W_enc_{layer} in {enc_path} must be a matrix, not {list(shape)}.")
    d_t, d_model = shape
    want = {f"b_enc_{layer}": (d_t,), f"b_dec_{layer}": (d_model,)}
    if f"threshold_{layer}" in enc:
        want[f"threshold_{layer}"] = (d_t,)
    for name, expected in want.items():
        if _shape(enc, name, enc_path) not in (expected, (1, *expected)):
            raise FeaturelensError(f"{name} in {enc_path} has shape {list(shape_of(enc, name))}, but its "
                                   f"W_enc implies {list(expected)}; the files are from different transcoders.")
    return enc, dec, d_t, d_model


def _clt_encoder_state(enc: dict, layer: int, d_t: int, d_model: int) -> tuple[dict, dict[str, Any]]:
    """The encoder half of a cross-layer layer's state and its transcoder options: JumpReLU
    when the file holds ``threshold_{layer}``, else ReLU (the caller adds ``W_dec``)."""
    threshold = f"threshold_{layer}" in enc
    state = {"W_enc": enc[f"W_enc_{layer}"].T.contiguous(), "b_enc": enc[f"b_enc_{layer}"].reshape(d_t),
             "b_dec": enc[f"b_dec_{layer}"].reshape(d_model)}
    if threshold:
        state["threshold"] = enc[f"threshold_{layer}"].reshape(d_t)
    return state, {"activation": "jumprelu" if threshold else "relu", "skip": False, "apply_b_dec_to_input": False}


def _load_clt(folder: Path, dtype: Any) -> tuple[dict[int, SparseAutoencoder], dict[int, torch.Tensor]]:
    """circuit-tracer's cross-layer files: ``W_enc_{l}.safetensors`` (``W_enc_{l} [d_t, d_model]``,
    ``b_enc_{l}``, ``b_dec_{l}``, optional ``threshold_{l}``) and ``W_dec_{l}.safetensors``
    (``W_dec_{l} [d_t, n_layers - l, d_model]``)."""
    n_layers = 0
    while (folder / f"W_enc_{n_layers}.safetensors").is_file():
        n_layers += 1
    if n_layers == 0:
        raise FeaturelensError(f"{folder} has no W_enc_0.safetensors; a cross-layer transcoder keeps one "
                               "encoder file per layer.")
    layers, cross = {}, {}
    for layer in range(n_layers):
        enc_path, dec_path = folder / f"W_enc_{layer}.safetensors", folder / f"W_dec_{layer}.safetensors"
        enc, dec, d_t, d_model = _clt_layer_files(enc_path, dec_path, layer)
        dec_shape = _shape(dec, f"W_dec_{layer}", dec_path)
        if dec_shape != (d_t, n_layers - layer, d_model):
            raise FeaturelensError(f"W_dec_{layer} in {dec_path} has shape {list(dec_shape)}, but layer {layer} "
                                   f"of {n_layers} needs {[d_t, n_layers - layer, d_model]}.")
        w_dec = dec[f"W_dec_{layer}"]
        state, options = _clt_encoder_state(enc, layer, d_t, d_model)
        state["W_dec"] = w_dec[:, 0, :].contiguous()
        layers[layer] = build("transcoder", d_model, d_t, options, state, dtype=parse_dtype(dtype, enc_path),
                              source=enc_path)
        if layer + 1 < n_layers:
            chosen = parse_dtype(dtype, dec_path) or w_dec.dtype
            cross[layer] = w_dec[:, 1:, :].contiguous().to(chosen)
    return layers, cross


def save_circuit_tracer(dictionary: Any, path: Path) -> None:
    """A per-layer set as circuit-tracer reads it: ``layer_<l>.safetensors`` + ``config.yaml``."""
    import yaml

    if not isinstance(dictionary, TranscoderSet) or dictionary.cross:
        raise FeaturelensError("featurelens writes circuit-tracer's layout for per-layer transcoder sets only; "
                               "save a cross-layer set with the transcoder_set format.")
    layout = dictionary.layout
    if layout.layers != list(range(len(layout.layers))):
        raise FeaturelensError(f"circuit-tracer needs a transcoder for every layer from 0; this set has layers "
                               f"{layout.layers}.")
    with atomic_folder(path) as tmp:
        files = []
        for layer in layout.layers:
            t = dictionary.transcoder(layer)
            activation = t.config.get("activation", "relu")
            if activation not in ("relu", "jumprelu") or t.rescale_acts_by_decoder_norm:
                raise FeaturelensError(f"Layer {layer} is a {activation} transcoder; circuit-tracer's per-layer "
                                       "files hold ReLU or JumpReLU transcoders, so train with activation relu "
                                       "or jumprelu to export there.")
            tensors = {"W_enc": t.W_enc.T, "b_enc": t.b_enc, "W_dec": t.W_dec, "b_dec": t.b_dec}
            if activation == "jumprelu":
                tensors["activation_function.threshold"] = t.threshold
            if t.W_skip is not None:
                tensors["W_skip"] = t.W_skip
            name = f"layer_{layer}.safetensors"
            save_safetensors({k: v.detach().float() for k, v in tensors.items()}, tmp / name)
            files.append(name)
        config = {"model_kind": "transcoder_set", "feature_input_hook": OUR_TO_CT.get(layout.input_hook, layout.input_hook),
                  "feature_output_hook": OUR_TO_CT.get(layout.output_hook, layout.output_hook), "transcoders": files}
        if dictionary.model_id:
            config["model_name"] = dictionary.model_id
        (tmp / CT_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
