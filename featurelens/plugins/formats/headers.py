"""Tensor shapes and dtypes read from file headers, before any weights are loaded.

A config that claims ``d_sae=30000000`` next to 1 KB of weights, or an ``.npz`` header
claiming a (1e6, 1e6) array, must be refused in one sentence, not after the allocator
has tried to build it. safetensors and ``.npy`` files both start with a small header
naming every tensor's dtype and shape; it is read and checked against the file's size
here, so loaders can compare shapes with their config and only then read the data.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from featurelens.core.errors import FeaturelensError

#: safetensors dtype names featurelens reads as weights, and their sizes in bytes.
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
#: Elements checked at once for NaN and infinities (bounds the transient mask).
FINITE_CHUNK = 1 << 20
#: A safetensors header larger than this is not a dictionary's (safetensors itself caps at 100 MB).
MAX_HEADER_BYTES = 100 * 2**20


def _refuse(path: Path, problem: str) -> FeaturelensError:
    kind = ".npz archive" if path.suffix == ".npz" else "safetensors file"
    return FeaturelensError(f"{path} is not a readable {kind} (it {problem}); re-download or "
                            "re-export the dictionary.")


def safetensors_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``name -> (shape, dtype)`` from a safetensors header, checked against the file size."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _refuse(path, "is too short for a header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise _refuse(path, f"has a header length ({length} bytes) its size ({size} bytes) cannot hold")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise _refuse(path, "has a header that is not JSON") from None
    if not isinstance(header, dict):
        raise _refuse(path, "has a header that is not a JSON object")
    data_bytes = size - 8 - length
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _refuse(path, f"describes tensor {name!r} with {entry!r} instead of dtype, shape and offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise FeaturelensError(
                f"{name} in {path} has dtype {dtype!r}; dictionary weights must be one of "
                f"{', '.join(SAFETENSORS_DTYPES)}, so re-export them as floating point.")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise _refuse(path, f"gives tensor {name!r} the shape {shape!r}, which is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise _refuse(path, f"gives tensor {name!r} no valid data_offsets")
        start, end = offsets
        need = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if not 0 <= start <= end <= data_bytes or end - start != need:
            raise _refuse(path, f"claims {name} {list(shape)} ({need} bytes of {dtype}) but holds "
                                f"{max(0, min(end, data_bytes) - start)} bytes for it")
        out[name] = (tuple(shape), dtype)
    return out


#: Rows apart that :meth:`SafetensorsFile.rows` still reads in one slice (the rows between
#: cost less than another slice).
ROW_GAP = 16


class SafetensorsFile(Mapping[str, torch.Tensor]):
    """A safetensors file whose shapes are known at once and whose tensors load on access.

    A file opened with ``cache=False`` (see :meth:`subset`) reads a tensor afresh on every
    access, straight into its own memory (no memory map, no copy kept here): a loader
    that takes each tensor once then holds every weight exactly once, which is what lets
    a million-feature dictionary load within its own size.
    """

    def __init__(self, path: Path, *, names: set[str] | None = None, cache: bool = True):
        self.path = path
        header = safetensors_header(path)
        self.header = header if names is None else {name: header[name] for name in header if name in names}
        self.cache = cache
        self._loaded: dict[str, torch.Tensor] = {}

    def shape(self, name: str) -> tuple[int, ...]:
        return self.header[name][0]

    def subset(self, names: set[str]) -> "SafetensorsFile":
        """The tensors ``names`` of this file, read afresh on each access (not cached)."""
        return SafetensorsFile(self.path, names=names, cache=False)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.header:
            raise KeyError(name)
        if not self.cache:
            return self.read(name)
        if name not in self._loaded:
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(self.path), framework="pt") as handle:
                    self._loaded[name] = handle.get_tensor(name)
            except (SafetensorError, OSError, ValueError) as error:
                raise _refuse(self.path, f"could not be read: {error}") from None
        return self._loaded[name]

    def read(self, name: str) -> torch.Tensor:
        """Tensor ``name`` read with plain file reads into a new tensor (the header's sizes
        were checked against the file when it was opened)."""
        shape, dtype = self.header[name]
        with open(self.path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            start, _ = json.loads(handle.read(length))[name]["data_offsets"]
            tensor = torch.empty(shape, dtype=_TORCH_DTYPES[dtype])
            buffer = tensor.reshape(-1).view(torch.uint8).numpy()
            handle.seek(8 + length + start)
            if handle.readinto(buffer) != buffer.size:
                raise _refuse(self.path, f"ends inside tensor {name!r}")
        return tensor

    def rows(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (ascending) of the 2-D tensor ``name``, read through a memory map:
        only those rows' bytes, never the whole tensor (one slice per run of ids at most
        :data:`ROW_GAP` apart)."""
        from safetensors import SafetensorError, safe_open

        shape, _ = self.header[name]
        ids = ids.long().cpu()
        if ids.numel() and (int(ids[0]) < 0 or int(ids[-1]) >= shape[0]):
            raise _refuse(self.path, f"has {shape[0]} rows in {name!r}, fewer than feature {int(ids[-1])} needs")
        parts = []
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                view = handle.get_slice(name)
                start = 0
                while start < ids.numel():
                    stop = start + 1
                    while stop < ids.numel() and int(ids[stop]) - int(ids[stop - 1]) <= ROW_GAP:
                        stop += 1
                    low, high = int(ids[start]), int(ids[stop - 1]) + 1
                    parts.append(view[low:high][ids[start:stop] - low])
                    start = stop
        except (SafetensorError, OSError, ValueError) as error:
            raise _refuse(self.path, f"could not be read: {error}") from None
        return torch.cat(parts) if parts else torch.empty((0, *shape[1:]), dtype=_TORCH_DTYPES[self.header[name][1]])

    def __iter__(self) -> Iterator[str]:
        return iter(self.header)

    def __len__(self) -> int:
        return len(self.header)


def shape_of(tensors: Mapping[str, torch.Tensor], name: str) -> tuple[int, ...]:
    """A tensor's shape without loading it when the mapping knows it from a header."""
    header_shape = getattr(tensors, "shape", None)
    if callable(header_shape):
        return tuple(header_shape(name))
    return tuple(tensors[name].shape)


def npz_header(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``name -> (shape, dtype)`` for every array of an ``.npz``, read from the ``.npy``
    headers only; non-numeric dtypes and sizes the archive cannot hold are refused."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if reader is None:
                        raise ValueError(f"unsupported .npy version {version}")
                    shape, _, dtype = reader(member)
                except ValueError as error:
                    raise _refuse(path, f"has an unreadable header for {name!r} ({error})") from None
            if dtype.hasobject or dtype.kind != "f":
                raise FeaturelensError(
                    f"{name} in {path} is an array of {dtype} values, not floating-point weights; "
                    "this is not a dictionary's params.npz.")
            need = math.prod(shape) * dtype.itemsize
            if need > info.file_size:
                raise _refuse(path, f"claims {name} {list(shape)} ({need} bytes) but stores "
                                    f"{info.file_size} bytes for it")
            out[name] = (tuple(shape), dtype)
    return out


def check_finite(tensor: torch.Tensor, name: str, source: Path | str) -> None:
    """Refuse NaN or infinite weights (they make every feature silently dead)."""
    if not tensor.is_floating_point():
        return
    flat = tensor.reshape(-1)
    bad = 0
    for start in range(0, flat.numel(), FINITE_CHUNK):
        chunk = flat[start:start + FINITE_CHUNK]
        low, high = torch.aminmax(chunk)  # one pass, nothing allocated; NaN or inf shows in these two
        if not (math.isfinite(float(low)) and math.isfinite(float(high))):
            bad += int((~torch.isfinite(chunk)).sum())
    if bad:
        raise FeaturelensError(
            f"{name} in {source} holds {bad} NaN or infinite values; the checkpoint is corrupt "
            "(often a diverged training run), so load an earlier checkpoint.")
