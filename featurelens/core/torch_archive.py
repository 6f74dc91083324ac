"""Tensors out of a ``torch.save`` archive, without unpickling it.

A ``torch.save`` file is a zip archive: ``<name>/data.pkl`` describes the saved object in
pickle opcodes and ``<name>/data/<key>`` holds each storage's raw bytes. Python's pickle
machinery would resolve any global the file names and call it; this module instead walks
the opcodes itself with a fixed table: it builds only dicts, lists, tuples, numbers,
strings, None and booleans, and tensors through the two rebuild functions torch writes
(``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``) over storages of the known
dtypes. Any other global (``posix.system``, a class) stops the read at once with
:class:`UnsafeObject` naming it, before anything is called. A tensor's size, stride and
offset are checked against its storage, and a storage's byte count against its dtype and
element count, before any bytes are copied.

:func:`shapes` walks the same opcodes with every storage on torch's ``meta`` device (no
bytes read, nothing allocated), so a caller can tell which keys and shapes a file holds,
and refuse a file that is not what it expects, before reading its weights. Each storage
is read once into one buffer, and a tensor that is exactly its storage is that buffer,
so a file's weights take about their own size in memory.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: torch's storage class names and the element type each holds.
STORAGES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
#: How raw bytes of each dtype are viewed before becoming a tensor (numpy has no bfloat16).
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
          torch.bfloat16: np.int16, torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
          torch.int8: np.int8, torch.uint8: np.uint8, torch.bool: np.bool_}
_CHUNK = 1 << 24  # bytes read from a storage at a time
_CALLABLES = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
              ("torch._utils", "_rebuild_parameter")}


class ArchiveError(ValueError):
    """The file is not a torch.save archive this reader understands (the reason, short)."""


class UnsafeObject(ArchiveError):
    """The archive names a global other than the tensor-building ones (its dotted name)."""


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Mark:
    pass


_MARK = _Mark()


class _Reader:
    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes, big_endian: bool, meta: bool = False,
                 archive_bytes: int = 0):
        self.archive, self.prefix, self.data, self.big_endian = archive, prefix, data, big_endian
        self.archive_bytes = archive_bytes
        self.meta = meta
        self.pos = 0
        self.storages: dict[str, torch.Tensor] = {}
        self.whole: set[int] = set()  # storages already handed out as a tensor without a copy

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ArchiveError("its data.pkl ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise ArchiveError("its data.pkl ends early")
        text = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return text

    def glob(self, module: str, name: str) -> Any:
        if (module, name) in _CALLABLES or (module == "torch" and name in STORAGES):
            return _Global(module, name)
        raise UnsafeObject(f"{module}.{name}")

    def storage(self, pid: Any) -> torch.Tensor:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _Global) or pid[1].name not in STORAGES
                or not isinstance(pid[2], str) or not isinstance(pid[4], int) or pid[4] < 0):
            raise ArchiveError("it refers to a storage in a form torch does not write")
        key = pid[2]
        if key not in self.storages:
            dtype = STORAGES[pid[1].name]
            member = f"{self.prefix}/data/{key}"
            try:
                info = self.archive.getinfo(member)
            except KeyError:
                raise ArchiveError(f"its storage {key} is missing") from None
            expected = pid[4] * torch.empty(0, dtype=dtype).element_size()
            if info.file_size != expected:
                raise ArchiveError(f"its storage {key} has {info.file_size} bytes, not the {expected} it declares")
            check_stored(info, self.archive_bytes)
            if self.meta:
                self.storages[key] = torch.empty(pid[4], dtype=dtype, device="meta")
                return self.storages[key]
            buffer = bytearray(expected)
            view, done = memoryview(buffer), 0
            with self.archive.open(member) as stream:  # in chunks: no second whole-storage copy
                while done < expected:
                    got = stream.readinto(view[done:done + _CHUNK])
                    if not got:
                        raise ArchiveError(f"its storage {key} ends before the {expected} bytes it declares")
                    done += got
                if stream.read(1):
                    raise ArchiveError(f"its storage {key} is longer than the {expected} bytes it declares")
            del view
            array = np.frombuffer(buffer, dtype=_NUMPY[dtype])
            if self.big_endian:
                array.byteswap(inplace=True)
            tensor = torch.from_numpy(array)
            self.storages[key] = tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor
        return self.storages[key]

    def rebuild(self, function: _Global, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise ArchiveError("it calls a function with arguments torch does not write")
        if function.name == "OrderedDict":
            if args:
                raise ArchiveError("it builds a mapping from arguments torch does not write")
            return {}
        if function.name == "_rebuild_parameter":
            if len(args) < 1 or not isinstance(args[0], torch.Tensor):
                raise ArchiveError("it builds a parameter from something other than a tensor")
            return args[0]
        if len(args) < 4:
            raise ArchiveError("it builds a tensor from arguments torch does not write")
        storage, offset, size, stride = args[:4]
        if (not isinstance(storage, torch.Tensor) or not isinstance(offset, int) or offset < 0
                or not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride)
                or not all(isinstance(v, int) and v >= 0 for v in size + stride)):
            raise ArchiveError("it builds a tensor with a malformed size, stride or offset")
        if all(size):  # every element it reads must lie inside its storage
            last = offset + sum((s - 1) * t for s, t in zip(size, stride))
            if last >= storage.numel():
                raise ArchiveError("a tensor in it reaches past the end of its storage")
        view = torch.as_strided(storage, size, stride, offset)
        if self.meta:
            return view
        if (offset == 0 and view.numel() == storage.numel() and view.is_contiguous()
                and id(storage) not in self.whole):
            self.whole.add(id(storage))  # the tensor is its whole storage: no second copy
            return view
        return view.clone()

    def run(self) -> Any:
        stack: list[Any] = []
        memo: dict[int, Any] = {}

        def pop_mark() -> list[Any]:
            for index in range(len(stack) - 1, -1, -1):
                if stack[index] is _MARK:
                    items = stack[index + 1:]
                    del stack[index:]
                    return items
            raise ArchiveError("its data.pkl is malformed (no mark)")

        def pop() -> Any:
            if not stack:
                raise ArchiveError("its data.pkl is malformed (empty stack)")
            return stack.pop()

        while True:
            op = self.take(1)[0]
            if op == 0x80:  # PROTO
                self.take(1)
            elif op == 0x95:  # FRAME
                self.take(8)
            elif op == ord("."):  # STOP
                result = pop()
                if isinstance(result, (_Global, _Mark)):
                    raise ArchiveError("its data.pkl is malformed")
                return result
            elif op == ord("c"):  # GLOBAL
                module = self.line()
                stack.append(self.glob(module, self.line()))
            elif op == 0x93:  # STACK_GLOBAL
                name, module = pop(), pop()
                if not isinstance(module, str) or not isinstance(name, str):
                    raise ArchiveError("its data.pkl is malformed")
                stack.append(self.glob(module, name))
            elif op in (ord("q"), ord("r"), 0x94):  # BINPUT, LONG_BINPUT, MEMOIZE
                index = (self.take(1)[0] if op == ord("q") else struct.unpack("<I", self.take(4))[0]
                         if op == ord("r") else len(memo))
                if not stack:
                    raise ArchiveError("its data.pkl is malformed (empty stack)")
                memo[index] = stack[-1]
            elif op in (ord("h"), ord("j")):  # BINGET, LONG_BINGET
                index = self.take(1)[0] if op == ord("h") else struct.unpack("<I", self.take(4))[0]
                if index not in memo:
                    raise ArchiveError("its data.pkl is malformed (unknown memo entry)")
                stack.append(memo[index])
            elif op == ord("("):
                stack.append(_MARK)
            elif op == ord(")"):
                stack.append(())
            elif op == ord("t"):
                stack.append(tuple(pop_mark()))
            elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
                n = op - 0x84
                if len(stack) < n:
                    raise ArchiveError("its data.pkl is malformed (short tuple)")
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif op == ord("]"):
                stack.append([])
            elif op == ord("l"):
                stack.append(pop_mark())
            elif op == ord("a"):
                value = pop()
                target = stack[-1] if stack else None
                if not isinstance(target, list):
                    raise ArchiveError("its data.pkl is malformed (append to a non-list)")
                target.append(value)
            elif op == ord("e"):
                items = pop_mark()
                if not stack or not isinstance(stack[-1], list):
                    raise ArchiveError("its data.pkl is malformed (append to a non-list)")
                stack[-1].extend(items)
            elif op == ord("}"):
                stack.append({})
            elif op == ord("d"):
                items = pop_mark()
                stack.append(self.pairs(items, {}))
            elif op == ord("s"):
                value, key = pop(), pop()
                if not stack or not isinstance(stack[-1], dict):
                    raise ArchiveError("its data.pkl is malformed (item set on a non-mapping)")
                self.pairs([key, value], stack[-1])
            elif op == ord("u"):
                items = pop_mark()
                if not stack or not isinstance(stack[-1], dict):
                    raise ArchiveError("its data.pkl is malformed (items set on a non-mapping)")
                self.pairs(items, stack[-1])
            elif op == ord("X"):
                stack.append(self.text(struct.unpack("<I", self.take(4))[0]))
            elif op == 0x8C:  # SHORT_BINUNICODE
                stack.append(self.text(self.take(1)[0]))
            elif op == 0x8D:  # BINUNICODE8
                stack.append(self.text(struct.unpack("<Q", self.take(8))[0]))
            elif op == ord("J"):
                stack.append(struct.unpack("<i", self.take(4))[0])
            elif op == ord("K"):
                stack.append(self.take(1)[0])
            elif op == ord("M"):
                stack.append(struct.unpack("<H", self.take(2))[0])
            elif op == 0x8A:  # LONG1
                stack.append(int.from_bytes(self.take(self.take(1)[0]), "little", signed=True))
            elif op == ord("G"):
                stack.append(struct.unpack(">d", self.take(8))[0])
            elif op == ord("N"):
                stack.append(None)
            elif op == 0x88:
                stack.append(True)
            elif op == 0x89:
                stack.append(False)
            elif op == ord("Q"):  # BINPERSID
                stack.append(self.storage(pop()))
            elif op == ord("R"):  # REDUCE
                args, function = pop(), pop()
                if not isinstance(function, _Global) or function.name in STORAGES:
                    raise ArchiveError("it calls something that is not a tensor-building function")
                stack.append(self.rebuild(function, args))
            elif op == ord("b"):  # BUILD: only a mapping's own attributes (a state dict's _metadata)
                state = pop()
                if not stack or not isinstance(stack[-1], dict) or not isinstance(state, dict):
                    raise ArchiveError("it sets the state of an object other than a mapping")
            else:
                raise ArchiveError(f"its data.pkl uses pickle opcode {op:#04x}, which torch.save does not write")

    def text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError("its data.pkl holds a string that is not UTF-8") from None

    @staticmethod
    def pairs(items: list[Any], into: dict) -> dict:
        if len(items) % 2:
            raise ArchiveError("its data.pkl is malformed (odd mapping items)")
        for key, value in zip(items[::2], items[1::2]):
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise ArchiveError("its data.pkl has a mapping key that is not a plain value")
            into[key] = value
        return into


def read(path: Path) -> Any:
    """The object a ``torch.save`` archive holds, built from plain values and tensors only.

    Raises :class:`UnsafeObject` for any global outside the tensor-building ones, and
    :class:`ArchiveError` for anything else this reader does not accept."""
    return _walk(path, meta=False)


def shapes(path: Path) -> Any:
    """What :func:`read` would return, with every tensor on the ``meta`` device: its
    dtype and shape, no bytes read (the same checks and refusals as :func:`read`)."""
    return _walk(path, meta=True)


def check_stored(info: zipfile.ZipInfo, archive_bytes: int) -> None:
    """Refuse a member whose bytes are not stored as they are within the file: torch.save
    writes every member uncompressed, and a compressed or over-long one would have the
    reader allocate what its header claims (a zip bomb) rather than what the file holds."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ArchiveError(f"its member {info.filename} is compressed, which torch.save never writes")
    if info.compress_size != info.file_size or info.header_offset + info.file_size > archive_bytes:
        raise ArchiveError(f"its member {info.filename} claims {info.file_size} bytes, more than the file holds")


def _walk(path: Path, meta: bool) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ArchiveError("it is not a zip archive (torch.save has written zip archives since torch 1.6)") from None
    with archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(names) != 1:
            raise ArchiveError("it holds no data.pkl at its top level")
        prefix = names[0].split("/")[0]
        order = f"{prefix}/byteorder"
        big = order in archive.namelist() and archive.read(order).strip() == b"big"
        size = Path(path).stat().st_size
        check_stored(archive.getinfo(names[0]), size)
        try:
            data = archive.read(names[0])
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ArchiveError(f"its data.pkl cannot be read ({type(error).__name__})") from None
        try:
            return _Reader(archive, prefix, data, big, meta, size).run()
        except (zipfile.BadZipFile, OSError) as error:
            raise ArchiveError(f"a storage in it cannot be read ({type(error).__name__})") from None
        except RecursionError:
            raise ArchiveError("its data.pkl nests too deeply") from None
