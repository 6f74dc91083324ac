"""The column-wise activation lines against the plain reading, row by row.

The plain reading (here only) is what the export did one feature at a time: every
example as a dict (``BrowserData.feature_batch``), one ``rows.activation_rows`` dict per
window, ``json_lines.line`` per row. The fast lines must parse to the same rows, with the
same floats bit for bit (``-0.0`` included), on a store with hostile tokens, missing
documents, non-finite activations and values on rounding ties.
"""

from __future__ import annotations

import json
from pathlib import Path

from synthetic_store import fill_store

import featurelens
from featurelens.browser.queries import BrowserData
from featurelens.export.neuronpedia import activation_lines, rows
from featurelens.export.neuronpedia import json_lines as npjson
from featurelens.export.neuronpedia.layout import ALL_QUANTILE

DID = "smollm2-l6-topk"


def _plain(data: BrowserData, src: rows.Source, features: list[int]) -> list[bytes]:
    out = []
    for record in data.feature_batch(DID, features, max_quantile=ALL_QUANTILE):
        for row in rows.activation_rows(src, int(record.stats["feature"]), record.examples, record.stats):
            out.append(npjson.line(row))
    return out


def _exact(line: str | bytes) -> str:
    """A canonical text of a parsed line that tells -0.0 from 0.0 and keeps every float's bits."""
    return json.dumps(json.loads(line), sort_keys=True)


def test_column_lines_parse_to_the_plain_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=12)
        tokens = ["a\\u0000b", "\\", "\\\\u0000", "\u2028", "\x1b[31m", "\r", "tab\t", '"q"', "\x00", "😀", "/"]
        store.execute("UPDATE sequences SET token_strs = list_concat(?, token_strs[12:]) "
                      "WHERE sequence_id % 2 = 0", [tokens])
        store.execute("UPDATE sequences SET document = NULL WHERE sequence_id % 3 = 0")
        store.execute("UPDATE sequences SET document = 'C:\\path \"x\"\n' WHERE sequence_id % 3 = 1")
        # ties at four decimals (1/32, 3/64...), tiny negatives (round to -0.0), zeros of both signs
        ties = [0.03125, 0.015625, -0.03125, 0.046875, -0.00001, -0.0, 0.0, 1e-5, 3.4e38, 123.45678]
        store.execute("UPDATE examples SET activations = list_concat(?::FLOAT[], activations[11:]) "
                      "WHERE feature % 2 = 1", [ties])
        store.execute("UPDATE examples SET activations = list_concat(activations[1:13], "
                      "['nan'::FLOAT, 'inf'::FLOAT, '-inf'::FLOAT]) WHERE feature = 2 AND kind = 'top' AND rank = 0")
        store.execute("UPDATE examples SET max_activation = 'inf' WHERE feature = 2 AND kind = 'quantile'")
        store.execute("UPDATE examples SET max_activation = 'nan' WHERE feature = 3 AND kind = 'top'")
        store.execute("UPDATE features SET max_activation = 'inf', density = 'nan', "
                      "histogram_edges = ['-inf'::DOUBLE, 1.0, 'inf'::DOUBLE] WHERE feature = 4")
        store.execute("UPDATE features SET max_activation = NULL WHERE feature = 6")
        store.execute("DELETE FROM features WHERE feature = 7")  # examples without statistics are left out
    data = BrowserData(path)
    try:
        dictionary = data._dicts("SELECT * FROM dictionaries WHERE dictionary_id = ?", [DID])[0]
        src = rows.Source.of(dictionary)
        features = list(range(12))
        stats = data.feature_stats(DID, features)
        fast = activation_lines.lines(activation_lines.read(data, src, DID, features, ALL_QUANTILE), src, stats)
        plain = _plain(data, src, features)
    finally:
        data.close()
    assert len(plain) > 50
    assert [_exact(line) for line in fast] == [_exact(line) for line in plain]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in fast)
    # the importer's NUL replacement must leave every line parseable, as it does the plain ones
    for line in fast:
        json.loads(line.replace("\\u0000", " "))
