"""One provider batch's requests, written to a temporary JSONL file as they are made.

A provider file holds up to 50,000 requests and 200 MB (OpenAI) or 100,000 and 256 MB
(Anthropic): kept as Python dicts until the upload, one file's prompts would cost
several times their JSON size in memory. Each line is encoded once, appended to the
file and counted (the size that decides where the file is cut is the size uploaded),
so submitting holds one line at a time whatever the width of the dictionary.

A :class:`RequestFile` is also the ``lines`` a :class:`~featurelens.core.host.protocols.BatchClient`
receives: a read-only sequence that decodes its lines from the file when iterated (so a
client that wants dicts still gets them), and :meth:`RequestFile.stream` hands the
encoded bytes to a client that uploads a file (OpenAI) without decoding them.
"""

from __future__ import annotations

import json
import tempfile
from typing import IO, Any, Iterator, Sequence


class RequestFile(Sequence[dict[str, Any]]):
    """The JSONL lines of one batch, on disk; ``len()`` lines, :attr:`size` bytes."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile("w+b")
        self._count = 0
        self.size = 0  #: bytes written, newlines included
        self.url: str | None = None  #: the first line's ``url`` (one endpoint a file)

    @staticmethod
    def encode(line: dict[str, Any]) -> bytes:
        """``line`` as the bytes it takes in the file (newline included)."""
        return json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"

    def append(self, line: dict[str, Any], encoded: bytes | None = None) -> None:
        """Write ``line`` (``encoded`` when the caller already has its bytes)."""
        data = encoded if encoded is not None else self.encode(line)
        if self._count == 0:
            self.url = line.get("url")
        self._file.seek(0, 2)
        self._file.write(data)
        self._count += 1
        self.size += len(data)

    def stream(self) -> IO[bytes]:
        """The file, rewound: the encoded lines, for an upload."""
        self._file.flush()
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        handle = self.stream()
        for raw in handle:
            yield json.loads(raw)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(index, int):
            raise TypeError("a RequestFile is indexed by line number only")
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        for number, line in enumerate(self):
            if number == index:
                return line
        raise IndexError(index)

    def __enter__(self) -> "RequestFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
