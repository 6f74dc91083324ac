"""Where a window of at most ``width`` tokens is cut from a longer stored one.

Explainers and scorers show short windows (delphi: 32 tokens) cut around the window's
first peak, which sits three quarters of the way in: what precedes a token is what a
causal model's feature can depend on. :func:`cut_start` is that rule for one window
(:func:`featurelens.llm.window_text.crop`); :func:`kept_spans` applies it to a whole
column of stored activation lists at once, so a reader that knows the width converts
only the values that will be looked at (:func:`featurelens.core.selection.load_records`).
numpy is imported by the bulk functions when they run: ``featurelens --help`` reaches
:func:`cut_start` through the prompt code and must not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


def cut_start(peak: int, n: int, width: int) -> int:
    """The first kept position of a window of ``n`` tokens cut to ``width < n``, whose
    first peak is at ``peak``."""
    return min(max(0, peak - (3 * width) // 4), n - width)


def kept_spans(column: pa.ChunkedArray, counts: list[int], width: int) -> list[tuple[int, int]]:
    """``(start, stop)`` within each row's list of the values a window keeps.

    Row ``i`` is first limited to its ``counts[i]`` tokens (a list longer than its tokens is
    cut, as when it is read), then, when ``width > 0`` and it is still longer than
    ``width``, cut around its first peak as :func:`cut_start` says. Peaks are found for
    every row in one numpy pass; a row holding NaN or nulls, or limited by its tokens, is
    read the way ``crop`` reads it (``list.index(max(...))``), so the spans are exactly
    those ``crop`` would keep, except that a row with a null value is kept whole (``crop``
    cannot cut it either). A null list keeps nothing.
    """
    import numpy as np

    spans: list[tuple[int, int]] = []
    row = 0
    for chunk in column.chunks:
        rows = len(chunk)
        limits = counts[row:row + rows]
        row += rows
        values = chunk.flatten()
        if chunk.null_count or values.null_count:
            spans += [_span_of(values, width, limit) for values, limit in zip(chunk.to_pylist(), limits)]
            continue
        offsets = chunk.offsets.to_numpy()
        bounds = offsets - offsets[0]
        lengths = np.diff(bounds)
        kept = np.minimum(lengths, np.asarray(limits, dtype=lengths.dtype))
        long = (kept > width) if width > 0 else np.zeros(rows, dtype=bool)
        starts = np.zeros(rows, dtype=np.int64)
        if long.any():
            flat = values.to_numpy(zero_copy_only=False)
            peaks, found = _first_peaks(flat, bounds, lengths)
            for i in np.flatnonzero(long & ~(found & (kept == lengths))):  # limited by its tokens, or NaN
                peaks[i] = _python_peak(flat[bounds[i]:bounds[i] + kept[i]].tolist())
            where = np.flatnonzero(long)
            # cut_start, on arrays
            starts[where] = np.minimum(np.maximum(0, peaks[where] - (3 * width) // 4), kept[where] - width)
        stops = starts + np.where(long, width, kept)
        spans += list(zip(starts.tolist(), stops.tolist()))
    return spans


def _first_peaks(flat: np.ndarray, bounds: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index of the first maximum of every row's list, and for which rows it was found
    (not for an empty row, nor for one holding NaN: Python's ``max`` reads those by position)."""
    import numpy as np

    peaks = np.zeros(len(lengths), dtype=np.int64)
    found = np.zeros(len(lengths), dtype=bool)
    filled = np.flatnonzero(lengths > 0)
    if not len(filled):
        return peaks, found
    starts = bounds[filled]
    # the rows' values are consecutive in ``flat``: each segment runs to the next filled row
    maxes = np.maximum.reduceat(flat, starts)
    hits = np.flatnonzero(flat == np.repeat(maxes, lengths[filled]))
    first = hits[np.minimum(np.searchsorted(hits, starts), len(hits) - 1)] if len(hits) else starts
    ok = ~np.isnan(maxes)
    peaks[filled[ok]] = (first - starts)[ok]
    found[filled[ok]] = True
    return peaks, found


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``start .. start + length - 1`` of every range, concatenated."""
    import numpy as np

    if not len(lengths):
        return np.zeros(0, dtype=np.int64)
    before = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)


def _python_peak(values: list) -> int:
    return values.index(max(values)) if values else 0


def _span_of(values: list | None, width: int, limit: int) -> tuple[int, int]:
    """:func:`kept_spans` for one row read as Python values. A row whose values cannot be
    compared (a null among them) is kept whole: the component's own ``crop`` then meets it
    and fails that feature alone, as it would without the cut."""
    n = min(len(values), limit) if values is not None else 0
    if width <= 0 or n <= width:
        return 0, n
    try:
        peak = _python_peak(values[:n])  # type: ignore[index]
    except TypeError:
        return 0, n
    start = cut_start(peak, n, width)
    return start, start + width
