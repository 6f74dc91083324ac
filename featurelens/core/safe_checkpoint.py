"""Checkpoints without pickle: tensors in a safetensors file, everything else in JSON.

A checkpoint called ``NAME`` in a folder is two files: the manifest ``NAME.json`` and
the tensor file it names, ``NAME.<token>.safetensors``. The manifest holds the saved
tree (nested dicts, lists, tuples, numbers, strings, booleans, None) as JSON, each
tensor replaced by a reference that names its safetensors entry with its dtype and
shape. Dicts whose keys are not all plain strings (an optimizer's parameter indices)
and tuples are tagged, so the tree reads back exactly as it was saved.

Writing: the tensor file, then the manifest, each to a temporary name, fsynced and
renamed, and the folder fsynced. The manifest's rename is the moment the new checkpoint
exists: until then the old manifest still names the old tensor file, which is deleted
only afterwards (every tensor file gets a fresh token, so a new one never replaces the
one the old manifest names). A kill -9 at any point leaves the old checkpoint or the
new one, never a mixture.

Reading never runs code (JSON and safetensors only) and allocates nothing before the
checks pass: the manifest is size-capped and must carry this module's format tag; every
reference's dtype and shape must equal the safetensors header's, the header must list
exactly the referenced tensors, the file's size must be the one recorded; and a caller's
``template`` (tensors of the shapes it expects) is compared too. Anything else is a
:class:`FeaturelensError` of one sentence.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

import torch

from featurelens.core.errors import FeaturelensError

FORMAT = "featurelens-checkpoint"
VERSION = 1
#: The largest manifest read: a manifest holds references and scalars, never tensor data.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: safetensors dtype names this module writes and reads.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
#: A checkpoint's name and its tensor file's name: plain names, never a path.
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TENSOR_FILE = re.compile(r"([A-Za-z0-9_-]{1,64})\.[0-9a-f]{16}\.safetensors")


class Invalid(Exception):
    """A manifest or tensor file that is not what this module writes (the reason, short)."""


# ----------------------------------------------------------------------------- writing

def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value
        return {"$tensor": key, "dtype": NAMES[value.dtype], "shape": list(value.shape)}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {"$dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"a checkpoint holds tensors and plain JSON values, not {type(value).__name__}")


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, none sharing memory with another (safetensors refuses that)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _write(path: Path, write: Any) -> None:
    """``write(temporary path)``, fsync, rename to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save(folder: Path, name: str, tree: dict[str, Any]) -> Path:
    """Write ``tree`` as checkpoint ``name`` in ``folder`` (replacing one of that name
    atomically); returns the manifest's path."""
    from safetensors.torch import save_file

    if not NAME.fullmatch(name):
        raise ValueError(f"checkpoint names are plain words, not {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, tensors)
    tensor_file = f"{name}.{secrets.token_hex(8)}.safetensors"
    _write(folder / tensor_file, lambda tmp: save_file(_plain(tensors), str(tmp)))
    manifest = {"format": FORMAT, "version": VERSION, "tensors": tensor_file,
                "bytes": (folder / tensor_file).stat().st_size, "tree": encoded}
    _write(folder / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(manifest), encoding="utf-8"))
    _sync_folder(folder)
    for old in folder.glob(f"{name}.*.safetensors"):  # the files earlier manifests of this name named
        if old.name != tensor_file:
            old.unlink(missing_ok=True)
    return folder / f"{name}.json"


# ----------------------------------------------------------------------------- reading

def _manifest(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Invalid("its manifest is larger than any featurelens writes")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Invalid("its manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Invalid("its manifest is not a featurelens checkpoint manifest")
    if manifest.get("version") != VERSION:
        raise Invalid(f"its manifest has version {manifest.get('version')!r}, this featurelens reads {VERSION}")
    if not isinstance(manifest.get("tensors"), str) or not TENSOR_FILE.fullmatch(manifest["tensors"]):
        raise Invalid("its manifest names no tensor file in the checkpoint's folder")
    if not isinstance(manifest.get("bytes"), int) or "tree" not in manifest:
        raise Invalid("its manifest lacks the tensor file's size or the saved values")
    return manifest


def _refs(node: Any, out: dict[str, tuple[str, list[int]]]) -> None:
    """Every tensor reference in an encoded tree: key -> (dtype, shape)."""
    if isinstance(node, list):
        for item in node:
            _refs(item, out)
    elif isinstance(node, dict):
        if "$tensor" in node:
            key, dtype, shape = node.get("$tensor"), node.get("dtype"), node.get("shape")
            if (not isinstance(key, str) or dtype not in DTYPES or not isinstance(shape, list)
                    or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
                raise Invalid("a tensor reference in its manifest is malformed")
            if key in out:
                raise Invalid(f"its manifest names tensor {key} twice")
            out[key] = (dtype, shape)
        else:
            for value in node.values():
                _refs(value, out)


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "$tensor" in node:
        return tensors[node["$tensor"]]
    if "$float" in node:
        text = node["$float"]
        if text not in ("nan", "inf", "-inf"):
            raise Invalid("a number in its manifest is malformed")
        return float(text)
    if "$tuple" in node:
        if not isinstance(node["$tuple"], list):
            raise Invalid("a tuple in its manifest is malformed")
        return tuple(_decode(v, tensors) for v in node["$tuple"])
    if "$dict" in node:
        pairs = node["$dict"]
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise Invalid("a mapping in its manifest is malformed")
        out = {}
        for key, value in pairs:
            key = _decode(key, tensors)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise Invalid("a mapping key in its manifest is not a string or an integer")
            out[key] = _decode(value, tensors)
        return out
    return {k: _decode(v, tensors) for k, v in node.items()}


def _kind(dtype: torch.dtype) -> str:
    return "bool" if dtype == torch.bool else "float" if dtype.is_floating_point else "int"


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        if isinstance(tree, (list, tuple)) and isinstance(step, int) and step < len(tree):
            tree = tree[step]
        elif isinstance(tree, dict) and step in tree:
            tree = tree[step]
        else:
            return None
    return tree


def _leaves(template: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], torch.Tensor]]:
    if isinstance(template, torch.Tensor):
        return [(path, template)]
    if isinstance(template, dict):
        return [leaf for key, value in template.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(template, (list, tuple)):
        return [leaf for index, value in enumerate(template) for leaf in _leaves(value, (*path, index))]
    return []


def _check_template(refs_tree: Any, template: Any) -> None:
    """Each template tensor must be saved with the same kind of dtype and, if the template
    holds elements, the same shape; an empty template tensor (a pool that grows) only
    fixes the number of dimensions and the trailing ones."""
    for path, expected in _leaves(template):
        where = ".".join(str(p) for p in path)
        node = _at(refs_tree, path)
        if not isinstance(node, dict) or "$tensor" not in node:
            raise Invalid(f"it has no tensor {where}")
        dtype, shape = DTYPES[node["dtype"]], node["shape"]
        if _kind(dtype) != _kind(expected.dtype):
            raise Invalid(f"its tensor {where} is {node['dtype']}, not {NAMES[expected.dtype]}")
        want = list(expected.shape)
        fits = shape == want if expected.numel() else (len(shape) == len(want) and shape[1:] == want[1:])
        if not fits:
            raise Invalid(f"its tensor {where} has shape {shape}, expected {want}")


def _encoded_view(node: Any) -> Any:
    """The encoded tree with tags undone but tensors left as references (for path lookups)."""
    if isinstance(node, list):
        return [_encoded_view(v) for v in node]
    if not isinstance(node, dict) or "$tensor" in node or "$float" in node:
        return node
    if "$tuple" in node:
        return [_encoded_view(v) for v in node["$tuple"]]
    if "$dict" in node:
        return {k: _encoded_view(v) for k, v in node["$dict"]
                if isinstance(k, (str, int)) and not isinstance(k, bool)}
    return {k: _encoded_view(v) for k, v in node.items()}


def load(folder: Path, name: str, *, device: torch.device | str = "cpu",
         template: Any = None) -> dict[str, Any]:
    """The tree saved as checkpoint ``name`` in ``folder`` (tensors on ``device``).

    Raises :class:`Invalid` (the reason, short) for anything but a checkpoint this module
    wrote whose tensors fit ``template``; a missing manifest raises FileNotFoundError."""
    from safetensors import safe_open

    manifest = _manifest(folder / f"{name}.json")
    tensor_path = folder / manifest["tensors"]
    if not tensor_path.is_file():
        raise Invalid(f"its tensor file {manifest['tensors']} is missing")
    if tensor_path.stat().st_size != manifest["bytes"]:
        raise Invalid(f"its tensor file is {tensor_path.stat().st_size} bytes, the manifest says {manifest['bytes']}")
    refs: dict[str, tuple[str, list[int]]] = {}
    _refs(manifest["tree"], refs)
    if template is not None:
        _check_template(_encoded_view(manifest["tree"]), template)
    try:
        with safe_open(str(tensor_path), framework="pt", device="cpu") as handle:
            header = {key: (handle.get_slice(key).get_dtype(), list(handle.get_slice(key).get_shape()))
                      for key in handle.keys()}
            if header != refs:  # shapes and dtypes known before anything is allocated
                raise Invalid("its tensor file does not hold the tensors its manifest names")
            tensors = {key: handle.get_tensor(key) for key in refs}
    except Invalid:
        raise
    except Exception as error:  # noqa: BLE001 - safetensors' own errors for a damaged file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise Invalid(f"its tensor file is not valid safetensors ({first})") from None
    device = torch.device(device)
    if device.type != "cpu":
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    tree = _decode(manifest["tree"], tensors)
    if not isinstance(tree, dict):
        raise Invalid("its saved values are not a mapping")
    return tree


def files(folder: Path, name: str) -> set[str]:
    """The file names checkpoint ``name`` consists of (its manifest, and the tensor file
    that manifest names when it can be read)."""
    kept = {f"{name}.json"}
    try:
        kept.add(_manifest(folder / f"{name}.json")["tensors"])
    except (OSError, Invalid):
        pass
    return kept


def remove(folder: Path, name: str) -> None:
    """Delete checkpoint ``name`` (manifest first: what is left is never taken for one)."""
    (folder / f"{name}.json").unlink(missing_ok=True)
    for path in folder.glob(f"{name}.*.safetensors"):
        path.unlink(missing_ok=True)
    for path in folder.glob(f".{name}.*.tmp"):
        path.unlink(missing_ok=True)
