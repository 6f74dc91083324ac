"""At most 1,000 files a folder: what Neuronpedia's importer can list.

The admin import (``app/api/admin/import/route.ts``) finds the ``features``,
``activations`` and ``explanations`` files of a source with ``getFilesInPath``
(``lib/utils/s3.ts``): one ``ListObjectsV2`` call with no continuation token. S3 answers
at most 1,000 keys a call, so from a folder of more files the importer would take the
first 1,000 in key order and never see the rest, without a word.

The export therefore never puts more than :data:`LIST_LIMIT` files in one folder:

- a dictionary of more than ``LIST_LIMIT x batch size`` features gets bigger batches
  (:func:`batch_size`), so ``features/`` holds at most ``LIST_LIMIT`` files;
- each batch may cut its activations (or explanations) into at most
  ``LIST_LIMIT // batches`` files (:func:`pieces`): when the usual size limit would need
  more, the batch's files grow instead, up to :data:`MOST_FILE_BYTES`; beyond that the
  export is refused in one sentence rather than written for a partial import.

Both depend only on the selection and the store, so a resumed export cuts the same way.
"""

from __future__ import annotations

import math
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.export.neuronpedia import json_lines as npjson

#: Keys one S3 ``ListObjectsV2`` page holds; the importer asks for one page only.
LIST_LIMIT = 1000

#: The largest file written when a batch must hold more than the usual size limit: the
#: importer reads a file whole into one JavaScript string (V8 holds about 512 Mi
#: characters), then splits and re-joins it, so half of that leaves room for the copies.
MOST_FILE_BYTES = 256 * 1024 * 1024


def batch_size(n_features: int, requested: int) -> int:
    """Features per batch: ``requested``, or more when ``n_features`` would need more than
    :data:`LIST_LIMIT` batch files."""
    return max(requested, math.ceil(n_features / LIST_LIMIT))


def files_per_batch(n_batches: int) -> int:
    """How many files of one kind each of ``n_batches`` batches may write."""
    return max(1, LIST_LIMIT // max(1, n_batches))


def pieces(rows: list[dict[str, Any]], most: int, *, what: str) -> list[bytes]:
    """``rows`` as JSON Lines in at most ``most`` files, each under the usual size limit
    (:data:`~featurelens.export.neuronpedia.json_lines.MAX_FILE_BYTES`) when that fits, else
    cut evenly; refused when a file would pass :data:`MOST_FILE_BYTES`."""
    return line_pieces([npjson.line(row) for row in rows], most, what=what)  # encoded once, for either cut


def text_pieces(lines: list[str], most: int, *, what: str) -> list[bytes]:
    """:func:`line_pieces` of JSON lines as text: encoded in one go when they fit one file
    (the usual case), line by line only when they must be cut."""
    blob = "".join(lines).encode()
    if len(blob) <= npjson.MAX_FILE_BYTES:
        return [blob] if blob else []
    return line_pieces([line.encode() for line in lines], most, what=what)


def line_pieces(lines: list[bytes], most: int, *, what: str) -> list[bytes]:
    """:func:`pieces` of JSON lines already encoded (:func:`~featurelens.export.neuronpedia.json_lines.line`)."""
    usual = list(npjson.by_size(lines))
    if len(usual) <= most:
        return usual
    total = sum(len(line) for line in lines)
    parts: list[list[bytes]] = [[] for _ in range(most)]
    offset = 0
    for line in lines:  # a line goes to the part its first byte falls in: contiguous, even
        parts[min(most - 1, offset * most // total)].append(line)
        offset += len(line)
    out = [b"".join(part) for part in parts if part]
    largest = max(len(data) for data in out)
    if largest > MOST_FILE_BYTES:
        raise FeaturelensError(
            f"{what} holds {_size(total)}, more than {most} file(s) of at most {_size(MOST_FILE_BYTES)} "
            f"can carry, and Neuronpedia's importer lists only the first {LIST_LIMIT:,} files of a folder; "
            "export the dictionary in parts with --where (fewer features per export) and import the parts "
            "one after another.")
    return out


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"
