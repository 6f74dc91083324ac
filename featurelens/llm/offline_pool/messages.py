"""What an offline labeling worker and its parent send each other: bytes, never pickles.

A page of work is a JSON header (the jobs: keys, ids, explanation texts) followed by the
page's record tables as Arrow IPC streams; an answer is JSON with one result per job: the
rows its finish returned, or the error it raised, which the parent raises again
(:func:`outcome` in the worker, :func:`answered` in the parent). Each message is one ``Connection.send_bytes`` call: length-prefixed parts, read back
by :func:`unpack`, which checks every length against the message before slicing.
"""

from __future__ import annotations

import json
import struct
from multiprocessing.connection import Connection
from typing import Any, Callable

import pyarrow as pa

from featurelens.core.host.protocols import ParseError
from featurelens.core.selection import RecordTables

_LENGTH = struct.Struct("<Q")


def _plain(value: Any) -> Any:
    """JSON for what a plugin's row may hold beyond JSON's types (numpy scalars: their value)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def encode(value: Any) -> bytes:
    """``value`` as JSON bytes (NaN and infinities kept, as Python's json writes them)."""
    return json.dumps(value, default=_plain, separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    return json.loads(data)


def pack(header: dict[str, Any], tables: RecordTables) -> bytes:
    """One page: ``header`` and the page's three record tables."""
    parts = [encode(header)]
    for table in (tables.features, tables.examples, tables.sequences):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        parts.append(sink.getvalue().to_pybytes())
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def unpack(data: bytes) -> tuple[dict[str, Any], RecordTables]:
    """The header and tables :func:`pack` wrote; a truncated or padded message is refused."""
    parts, at = [], 0
    view = memoryview(data)
    while at < len(data):
        if at + _LENGTH.size > len(data):
            raise ValueError("a page message ends inside a part's length")
        (size,) = _LENGTH.unpack_from(view, at)
        at += _LENGTH.size
        if size > len(data) - at:
            raise ValueError(f"a page message's part claims {size} bytes; {len(data) - at} are left")
        parts.append(view[at:at + size])
        at += size
    if len(parts) != 4:
        raise ValueError(f"a page message has {len(parts)} parts, not 4")
    header = decode(bytes(parts[0]))
    features, examples, sequences = (pa.ipc.open_stream(pa.py_buffer(part)).read_all() for part in parts[1:])
    return header, RecordTables(features, examples, sequences)


def outcome(finish: Callable[[list[Any]], dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """A job's finish run in the worker, as the parent's :func:`answered` reads it: its rows,
    or the error it raised (a :class:`ParseError` kept apart: the engine records it as it is)."""
    try:
        return {"rows": finish([])}
    except ParseError as error:
        return {"parse_error": str(error)}
    except Exception as error:  # noqa: BLE001 - the engine reports it as this job's failure
        return {"error": [type(error).__name__, str(error)]}


def answered(result: dict[str, Any]) -> Callable[[list[Any]], dict[str, list[dict[str, Any]]]]:
    """The parent's ``finish`` of a job a worker did: its rows, or its error raised again
    under the same name and message, so the engine records exactly what it would have
    recorded had the job been finished here."""
    def finish(responses: list[Any]) -> dict[str, list[dict[str, Any]]]:
        if "rows" in result:
            return result["rows"]
        if "parse_error" in result:
            raise ParseError(result["parse_error"])
        name, message = result["error"]
        raise _named(str(name))(message)
    return finish


def _named(name: str) -> type[Exception]:
    """An exception class called ``name`` (the worker's exception, by name and message only)."""
    return type(name if name.isidentifier() else "WorkerError", (Exception,), {})


class Pipe:
    """A pipe to read and a pipe to write (file descriptors) as one connection of byte
    messages: ``multiprocessing``'s length-prefixed framing, only its ``*_bytes`` methods."""

    def __init__(self, read_fd: int, write_fd: int):
        self.reader = Connection(read_fd, writable=False)
        self.writer = Connection(write_fd, readable=False)

    def recv_bytes(self) -> bytes:
        return self.reader.recv_bytes()

    def send_bytes(self, data: bytes) -> None:
        self.writer.send_bytes(data)

    def poll(self, timeout: float) -> bool:
        return self.reader.poll(timeout)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
