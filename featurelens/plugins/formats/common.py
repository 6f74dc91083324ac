"""Helpers every dictionary format shares: reading configs and tensors with one-sentence
errors, checking shapes, rebuilding a built-in architecture, and writing folders
atomically (a crash mid-save never leaves a half-written checkpoint behind)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.formats.headers import SafetensorsFile, check_finite, shape_of


def read_json(path: Path, fmt: str) -> dict[str, Any]:
    """The JSON object in ``path``, or one sentence saying why it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeaturelensError(f"{path} is missing; a {fmt} checkpoint needs it next to its weights.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise FeaturelensError(
            f"{path} is not valid JSON ({error.__class__.__name__}: {str(error)[:120]}); "
            f"restore the {fmt} config file or re-export the dictionary."
        ) from None
    if not isinstance(data, dict):
        raise FeaturelensError(f"{path} holds a JSON {type(data).__name__}, not the object a {fmt} config is.")
    return data


def read_safetensors(path: Path, fmt: str) -> SafetensorsFile:
    """A safetensors file's tensors by name: shapes and dtypes come from its (checked)
    header at once, each tensor's data is read only when it is used, so shapes are
    compared with the config before anything large is allocated."""
    if not path.is_file():
        raise FeaturelensError(f"{path} is missing; a {fmt} checkpoint keeps its weights there.")
    return SafetensorsFile(path)


def require(tensors: Mapping[str, torch.Tensor], name: str, shape: tuple[int, ...],
            source: Path | str, fmt: str) -> torch.Tensor:
    """``tensors[name]`` if present with ``shape``; otherwise one sentence saying what is wrong."""
    return tensors[require_shape(tensors, name, shape, source, fmt)]


def require_shape(tensors: Mapping[str, torch.Tensor], name: str, shape: tuple[int, ...],
                  source: Path | str, fmt: str) -> str:
    """``name`` if ``tensors`` holds it with ``shape`` (read from a header when it has one,
    so nothing is loaded); otherwise one sentence saying what is wrong."""
    if name not in tensors:
        present = ", ".join(sorted(tensors)) or "none"
        raise FeaturelensError(
            f"{source} has no tensor {name!r} (it has: {present}), so it is not a complete {fmt} "
            "checkpoint; re-export it with all of its weights."
        )
    found = shape_of(tensors, name)
    if found != tuple(shape):
        raise FeaturelensError(
            f"{name} in {source} has shape {list(found)} but its config implies {list(shape)}; "
            "the weights and the config are from different dictionaries."
        )
    return name


def config_int(config: Mapping[str, Any], key: str, source: Path | str, fmt: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FeaturelensError(
            f"{source} needs a non-negative integer {key!r} in its {fmt} config, found {value!r}."
        )
    return value


def build(architecture: str, d_in: int, d_sae: int, options: dict[str, Any],
          state: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None,
          source: Path | str = "the checkpoint") -> SparseAutoencoder:
    """A built-in dictionary with exactly ``state`` as its parameters and buffers.

    Before anything is allocated, the sizes are checked against the weights the file
    holds (shapes from its header): a dictionary of ``d_in x d_sae`` needs at least that
    many weights, so a config claiming a huge width over a small file is refused at
    once, and what is built is never much larger than the file. NaN or infinite weights
    are refused too.
    """
    from featurelens.core.host.manager import get_registry

    component = get_registry().get("dictionary_learner", architecture)
    for key, value in (("d_in", d_in), ("d_sae", d_sae)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise FeaturelensError(f"{source} gives {key}={value!r}; it must be a positive integer.")
    for name in state:
        if not isinstance(state, SafetensorsFile) and not state[name].is_floating_point():
            raise FeaturelensError(f"{name} in {source} holds {state[name].dtype} values; dictionary "
                                   "weights must be floating point, so re-export them as float32.")
    held = sum(math.prod(shape_of(state, name)) for name in state)
    if d_in * d_sae > held:
        raise FeaturelensError(
            f"{source} describes a dictionary of d_in={d_in}, d_sae={d_sae}, which needs at least "
            f"{d_in * d_sae} weights, but its weights hold {held}; the weights and the config are "
            "from different dictionaries.")
    # Built first on the meta device (shapes only, no weights drawn): when the file holds
    # every tensor the dictionary has, its random initialisation is never materialised,
    # so a million-feature dictionary loads within its own size instead of twice it.
    try:
        with torch.device("meta"):
            model = component.create(d_in, d_sae, **options)
    except (RuntimeError, NotImplementedError):  # an __init__ that computes on its tensors
        model = None
    if model is None or not set(model.state_dict()) <= set(state) or _meta_attributes(model):
        model = component.create(d_in, d_sae, **options)  # some tensors keep their initial values
    own = set(model.state_dict())  # names only: holding the tensors would keep the initial weights alive
    with torch.no_grad():
        for name in state:
            if name not in own:
                raise FeaturelensError(f"{source} holds tensor {name!r}, which a {architecture} dictionary does "
                                       "not have; the weights and the config disagree, so re-export it.")
            target = getattr_path(model, name)
            if tuple(target.shape) != shape_of(state, name):
                raise FeaturelensError(
                    f"{name} has shape {list(shape_of(state, name))}, but a {architecture} dictionary of "
                    f"d_in={d_in}, d_sae={d_sae} needs {list(target.shape)}; the checkpoint is inconsistent."
                )
            # the initial weights go before the file's are read, so each weight is held
            # once: a million-feature dictionary loads within its own size
            if not target.is_meta:
                target.data = torch.empty(0, dtype=target.dtype)
            fresh = isinstance(state, SafetensorsFile) and not state.cache  # read for us alone
            tensor = state[name].detach()
            check_finite(tensor, name, source)
            _replace(model, name, (tensor if fresh else tensor.clone()).to(dtype or tensor.dtype))
    # Loaded dictionaries are used for inference: no autograd bookkeeping by default.
    model.requires_grad_(False)
    model.eval()
    return model


def _meta_attributes(model: torch.nn.Module) -> bool:
    """Whether a module built on the meta device keeps a tensor outside its parameters and
    buffers (loading the file would not replace it, so the module must be built for real)."""
    return any(isinstance(value, torch.Tensor) and value.is_meta
               for module in model.modules() for key, value in vars(module).items()
               if key not in ("_parameters", "_buffers"))


def _replace(model: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Put ``tensor`` in place of the parameter or buffer ``name`` (a meta tensor cannot
    take other data, so the parameter object itself is replaced)."""
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
    else:
        owner._buffers[leaf] = tensor


def getattr_path(model: torch.nn.Module, name: str) -> torch.Tensor:
    obj: Any = model
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Write into a temporary sibling folder, then move it to ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            backup = path.with_name(f".{path.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def as_sae(dictionary: Any, fmt: str) -> SparseAutoencoder:
    if not isinstance(dictionary, SparseAutoencoder):
        raise FeaturelensError(
            f"The {fmt} format stores sparse autoencoders and transcoders; "
            f"a {getattr(dictionary, 'architecture', type(dictionary).__name__)} dictionary cannot be saved in it."
        )
    return dictionary


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


def parse_dtype(value: Any, source: Path | str) -> torch.dtype | None:
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name not in DTYPES:
        raise FeaturelensError(f"{source} asks for dtype {value!r}; use one of {', '.join(DTYPES)}.")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def decoder_slice(weights: Path, name: str, d_sae: int, features: torch.Tensor, dtype: torch.dtype | None,
                  fmt: str) -> torch.Tensor | None:
    """Decoder rows ``features`` of tensor ``name`` (``[d_sae, d_out]``) in ``weights``, in the
    dtype the format's ``load`` gives (``dtype``, else the file's): the rows a loaded
    dictionary's ``decoder_directions()`` holds, read without loading the rest. None when the
    file has no such tensor (the caller loads the whole dictionary instead)."""
    tensors = read_safetensors(weights, fmt)
    if name not in tensors or len(tensors.shape(name)) != 2 or tensors.shape(name)[0] != d_sae:
        return None
    rows = tensors.rows(name, features)
    return rows.to(dtype) if dtype is not None else rows
