"""``Activation`` rows of a batch of features as JSON lines, built column by column.

A million-feature export writes about fifteen million activation rows. Built as one
Python dict per row and encoded by ``json`` (:func:`featurelens.export.neuronpedia.rows.activation_rows`,
which the upload route still uses), each row cost tens of microseconds; here one query per
batch returns an Arrow table and the work is done per column:

- the id comes from DuckDB (``sha256`` of the same parts, joined the same way, as
  :func:`~featurelens.export.neuronpedia.rows.row_id`);
- the tokens and the document come as JSON text from DuckDB's ``to_json``: the same
  strings once parsed (it writes no space after a comma), with backslashes made safe
  from the importer's NUL replacement as :func:`~featurelens.export.neuronpedia.json_lines.line` does;
- the activation values are rounded for the whole batch at once. Activations are stored
  as float32, so ``x * 10**4`` is exact in float64 (a 24-bit significand times 625 times
  16); rounding it half to even (``rint``) and dividing by ``10**4`` gives the double
  nearest the correctly rounded decimal, which is what Python's ``round(x, 4)`` returns.
  A window holding NaN or infinity takes the row-by-row path (:func:`rows._values`);
- each distinct value is written once (``repr``, as ``json`` writes floats) and the
  windows are joined from those pieces.

The lines parse to exactly the rows :func:`rows.activation_rows` builds (a test compares
them on stores with hostile tokens and non-finite activations).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from featurelens.browser.queries import BrowserData
from featurelens.export.neuronpedia import rows
from featurelens.export.neuronpedia.json_lines import FLOAT32_MAX

#: Top windows exported per feature (those a feature page shows).
TOP = 20

def _safe_sql(json_text: str) -> str:
    """:func:`_safe` in SQL (a SQL string literal has no escapes: ``'\\\\'`` is two backslashes)."""
    return f"replace({json_text}, '\\\\', '\\u005c')"


_QUERY = (
    "SELECT x.feature, x.kind = 'top' AS top, x.rank, x.max_activation, x.max_position, x.sequence_id, "
    f"x.activations, {_safe_sql('to_json(s.token_strs)')} AS tokens, {_safe_sql('to_json(s.document)')} AS document, "
    "'c' || left(sha256(concat_ws(chr(31), 'activation', ?, ?, x.feature, x.kind, x.rank)), 24) AS id "
    "FROM examples x JOIN sequences s ON s.corpus_id = x.corpus_id AND s.sequence_id = x.sequence_id "
    "WHERE x.dictionary_id = ? AND x.feature BETWEEN ? AND ? AND list_contains(?, x.feature) "
    "AND ((x.kind = 'top' AND x.rank < ?) OR (x.kind = 'quantile' AND x.rank < ?)) "
    "ORDER BY x.feature, x.kind <> 'top', x.rank")


def _safe(text: str) -> str:
    """JSON text with every backslash written ``\\u005c`` (see :mod:`.json_lines`)."""
    return text.replace("\\\\", "\\u005c")


def _string(text: str) -> str:
    return _safe(json.dumps(text, ensure_ascii=False))


def rounded(values: np.ndarray) -> np.ndarray:
    """``round(x, 4)`` of every float32 ``x`` as float64 (exact: see the module docstring)."""
    wide = values.astype(np.float64)
    return np.rint(wide * 1e4) / 1e4


def _finite(values: np.ndarray) -> np.ndarray:
    """:func:`json_lines.finite` of each value: NaN -> 0, +/-inf -> +/-FLOAT32_MAX."""
    return np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=FLOAT32_MAX, neginf=-FLOAT32_MAX)


def _reprs(values: np.ndarray) -> list[str]:
    """``repr`` of every value (as ``json`` writes a float); most activations of a window
    are zero, so only the others are formatted one by one."""
    texts = ["0.0"] * len(values)
    lit = np.flatnonzero(values.view(np.int64) != 0)  # +0.0 is the only all-zero bit pattern
    for i, value in zip(lit.tolist(), values[lit].tolist()):
        texts[i] = repr(value)
    return texts


def _row_minima(values: np.ndarray, starts: list[int], ends: list[int]) -> list[float]:
    """``min(window, default=0.0)`` of every window, the first of equal values (the sign of a
    zero) as Python's ``min`` keeps it."""
    lengths = {b - a for a, b in zip(starts, ends)}
    if len(lengths) == 1 and 0 not in lengths:  # windows of one length: one argmin over a matrix
        width = lengths.pop()
        grid = values[starts[0]:ends[-1]].reshape(-1, width)
        first = np.argmin(grid, axis=1)  # the first occurrence of the minimum, as min() keeps it
        return grid[np.arange(len(grid)), first].tolist()
    floats = values.tolist()
    return [min(floats[a:b], default=0.0) for a, b in zip(starts, ends)]


def read(data: BrowserData, src: rows.Source, dictionary_id: str, features: list[int],
         max_quantile: int) -> pa.Table:
    """The top and quantile windows of the sorted ``features``, one row each, in export order."""
    return data.table(_QUERY, [src.model_id, src.source_id, dictionary_id, features[0], features[-1], features,
                               TOP, max_quantile])


def lines(table: pa.Table, src: rows.Source, stats: list[dict[str, Any]]) -> list[str]:
    """One JSON line (with its newline) per row of ``table`` (from :func:`read`), for the features in
    ``stats`` (others are left out, as a feature without a statistics row has no page)."""
    by_feature = {int(s["feature"]): s for s in stats}
    n = table.num_rows
    if n == 0:
        return []
    acts = table.column("activations").combine_chunks()
    if acts.null_count:
        acts = pa.array([a or [] for a in acts.to_pylist()], type=acts.type)
    offsets = acts.offsets.to_numpy()
    offsets = offsets - offsets[0]
    flat = acts.flatten().to_numpy(zero_copy_only=False)
    bad_rows: set[int] = set()
    if flat.dtype != np.float32:  # not the stored float32: round row by row, exactly as rows._values
        bad_rows = set(range(n))
        flat = np.zeros(offsets[-1], np.float64)
    else:
        bad = np.flatnonzero(~np.isfinite(flat))
        if len(bad):
            bad_rows = set((np.searchsorted(offsets, bad, side="right") - 1).tolist())
            flat = np.where(np.isfinite(flat), flat, 0)
    values = rounded(flat)
    values[flat == 0] = 0.0  # rows._values writes a zero activation as 0.0, never -0.0
    bounds = offsets.tolist()
    starts, ends = bounds[:-1], bounds[1:]
    texts = _reprs(values)
    value_texts = [", ".join(texts[a:b]) for a, b in zip(starts, ends)]
    minima = _row_minima(values, starts, ends)
    raw_max = table.column("max_activation").to_pylist()
    maxima = table.column("max_activation").to_numpy()
    if maxima.dtype == np.float32:
        max_values = rounded(_finite(maxima)).tolist()
    else:
        max_values = [rows._num(v, 0.0) for v in raw_max]
    for i in bad_rows:  # NaN or infinity in the window: row by row, exactly as rows._values
        row_values = rows._values(acts[i].as_py() or [])
        value_texts[i] = ", ".join(map(repr, row_values))
        minima[i] = min(row_values, default=0.0)

    model, layer, creator = _string(src.model_id), _string(src.source_id), _string(src.creator_id)
    head = f'", "modelId": {model}, "layer": {layer}, "index": "'
    tail = f', "creatorId": {creator}, "binMin": '
    columns = [table.column(name).to_pylist() for name in
               ("feature", "top", "max_position", "sequence_id", "tokens", "document", "id")]
    out: list[str] = []
    current, intervals, top_bin, stat = None, None, "", None
    for i, (feature, top, position, sequence, tokens, document, row_id) in enumerate(zip(*columns)):
        if feature != current:
            current, intervals = feature, None
            stat = by_feature.get(feature)
            if stat is not None:
                top_bin = f"-1.0, \"binMax\": {rows._num(stat.get('max_activation'), 0.0)!r}, \"binContains\": -1.0}}\n"
        if stat is None:
            continue
        if top:
            bins = top_bin
        else:
            if intervals is None:
                top_value = stat.get("max_activation")
                intervals = rows.quantile_intervals(top_value or 0.0, list(stat.get("histogram_edges") or []),
                                                    list(stat.get("histogram_counts") or []))
            low, high, share = intervals[rows.interval_of(raw_max[i], stat.get("max_activation") or 0.0)]
            bins = f"{rows._num(low)!r}, \"binMax\": {rows._num(high)!r}, \"binContains\": {round(share, 6)!r}}}\n"
        out.append(f'{{"id": "{row_id}{head}{feature}", "tokens": {tokens}, "values": [{value_texts[i]}], '
                   f'"maxValue": {max_values[i]!r}, "maxValueTokenIndex": {int(position)}, '
                   f'"minValue": {minima[i]!r}, "dataIndex": "{sequence}", "dataSource": '
                   f'{"null" if document is None else document}{tail}{bins}')
    return out

