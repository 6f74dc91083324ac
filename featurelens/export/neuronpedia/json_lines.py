"""JSON Lines that survive Neuronpedia's importer byte for byte.

Three things in ``lib/db/import.ts`` and ``lib/utils/s3.ts`` shape what may be written:

- every line goes through ``JSON.parse`` (activations) or PostgreSQL's ``jsonb``: both
  refuse ``NaN`` and ``Infinity``, which Python's ``json`` writes by default, so one
  non-finite activation would stop the whole file;
- before parsing, the importer replaces the six characters ``\\u0000`` with a space
  (PostgreSQL cannot store NUL). A token holding a real backslash followed by ``u0000``
  is written by ``json`` as ``\\\\u0000``, which that replacement turns into an invalid
  escape; writing every backslash as ``\\u005c`` keeps the text and the file valid;
- a file is read whole into one JavaScript string (at most about 512 MiB) and inserted
  in chunks of 65,000 lines (about 200 MB per statement), so files are cut by size.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Iterator

#: Uncompressed bytes per activations/explanations file: far under the importer's limits
#: (one JavaScript string per file, about 200 MB per 65,000-line insert).
MAX_FILE_BYTES = 64 * 1024 * 1024

#: Stand-in for +/-inf: the largest float32, the most an activation can hold.
FLOAT32_MAX = 3.4028234663852886e38


def finite(value: Any, default: float = 0.0) -> float:
    """``value`` as a finite float: NaN -> ``default``, +/-inf -> +/-FLOAT32_MAX."""
    if value is None:
        return default
    number = float(value)
    if math.isnan(number):
        return default
    if math.isinf(number):
        return FLOAT32_MAX if number > 0 else -FLOAT32_MAX
    return number


def line(row: dict[str, Any]) -> bytes:
    """One JSON line the importer parses to exactly ``row`` (ValueError on NaN/inf)."""
    text = json.dumps(row, ensure_ascii=False, allow_nan=False)
    return text.replace("\\\\", "\\u005c").encode() + b"\n"


def lines(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(line(row) for row in rows)


def by_size(encoded: Iterable[bytes], limit: int | None = None) -> Iterator[bytes]:
    """JSON Lines already encoded (:func:`line`), cut into pieces of at most ``limit`` bytes
    (default :data:`MAX_FILE_BYTES`; a single longer line is a piece of its own)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    piece: list[bytes] = []
    size = 0
    for text in encoded:
        if piece and size + len(text) > limit:
            yield b"".join(piece)
            piece, size = [], 0
        piece.append(text)
        size += len(text)
    if piece:
        yield b"".join(piece)
