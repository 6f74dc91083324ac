"""The report's feature pages, written in bulk from static pieces
(featurelens/export/html_pages.py), against the template page they stand for:
``feature_page`` of the report's windows (``report_examples``), byte for byte, on a store
made hostile everywhere a page shows store text or branches: markup and quotes in tokens,
documents, explanations, scorer names and effect tokens; special, empty, newline and tab
tokens; windows longer than the cut, activation rows shorter than their windows, NaN
activations and maxima, NULL quantiles, a kind the page does not draw, a feature with no maximum,
scores that are NaN, missing or with parse failures, an offline explainer's badge and
ablation effects with missing values."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.browser.links import StaticLinks
from featurelens.browser.queries import BrowserData
from featurelens.browser.render_feature import feature_page
from featurelens.export.html_pages import PageWriter, Sequences
from featurelens.export.html_windows import note, report_examples
from featurelens.export.runner import export

DID = "smollm2-l6-topk"
N = 24

HOSTILE = ["<|im_start|>", "<b>", "&amp;", "\"q'", "", "\n", "\t", "a\rb", "<s>", " x", "é", "</span>"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pages") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=N, n_sequences=64, seq_len=48, n_top=14, n_quantile=12, n_random=6)
    con = duckdb.connect(str(path))
    try:
        tokens = ", ".join("'" + t.replace("'", "''") + "'" for t in HOSTILE * 4)
        con.execute(f"""
            UPDATE sequences SET token_strs = list_concat([{tokens}], list_slice(token_strs, {len(HOSTILE) * 4 + 1}, 48)),
                   document = '<doc "' || sequence_id || '"> & ''more'''
            WHERE sequence_id % 3 = 0""")
        con.execute("UPDATE sequences SET token_strs = list_slice(token_strs, 1, 20) WHERE sequence_id % 5 = 1")
        con.execute("UPDATE examples SET quantile = rank // 3 WHERE kind = 'quantile' AND feature % 4 <> 2")
        con.execute("UPDATE examples SET activations = list_slice(activations, 1, 30) "
                    "WHERE feature = 6 AND kind = 'top'")
        con.execute("UPDATE examples SET activations = list_concat(['nan'::FLOAT, 2.5::FLOAT, -1.0::FLOAT], "
                    "list_slice(activations, 4, 48)), max_position = 200 WHERE feature = 7")
        con.execute("INSERT INTO examples SELECT dictionary_id, feature, 'extra', rank, corpus_id, sequence_id, "
                    "activations, max_activation * 3, max_position, quantile FROM examples "
                    "WHERE feature = 8 AND kind = 'top'")
        con.execute("UPDATE examples SET max_activation = 'nan'::FLOAT WHERE feature = 13 AND rank = 0")
        # no maximum for the feature, and a NaN first among its top windows' (max() depends on order)
        con.execute("UPDATE examples SET max_activation = 'nan'::FLOAT WHERE feature = 9 AND kind = 'top' AND rank = 0")
        con.execute("UPDATE features SET max_activation = NULL WHERE feature IN (8, 9)")
        con.execute("UPDATE features SET histogram_counts = NULL WHERE feature = 9")
        con.execute("UPDATE explanations SET llm = 'offline:none', explainer = 'token-lookup', "
                    "text = 'tokens <i>\"a\"</i> & ''b''' WHERE feature = 5")
        con.execute("UPDATE scores SET score = 'nan'::DOUBLE, n_parse_failures = 3 WHERE feature = 2")
        con.execute("UPDATE scores SET score = NULL, status = '<failed>', scorer = 'det&ect' WHERE feature = 4")
        con.execute("DELETE FROM scores WHERE feature = 10")
        con.execute("""INSERT INTO feature_effects (dictionary_id, feature, n_windows, n_positions, mean_kl, max_kl,
                       promoted_tokens, promoted_deltas, suppressed_tokens, suppressed_deltas) VALUES
                       (?, 11, 4, 9, 0.25, 1.5, ['<a>', '&', '\n'], [0.5, 0.25, 0.125], ['"x"'], [-0.5]),
                       (?, 12, 0, 0, NULL, NULL, [], [], NULL, NULL)""", [DID, DID])
    finally:
        con.close()
    return path


@pytest.mark.parametrize("chunk, kept_tokens", [(N, Sequences.MOST_TOKENS), (4, 100)])
def test_every_page_is_the_template_page_byte_for_byte(hostile: Path, monkeypatch: pytest.MonkeyPatch,
                                                       chunk: int, kept_tokens: int) -> None:
    """In one batch, and in batches of 4 with a sequence cache that starts over every batch
    or two (the texts kept from one batch serve the next)."""
    monkeypatch.setattr(Sequences, "MOST_TOKENS", kept_tokens)
    data = BrowserData(hostile)
    try:
        links = StaticLinks().at_depth(2)
        features = list(range(N))
        neighbours = {f: (f - 1 if f else None, f + 1 if f + 1 < N else None) for f in features}
        writer = PageWriter(data, DID, links, note())
        written = {}
        for start in range(0, N, chunk):
            written.update(writer.pages(features[start:start + chunk], neighbours))
        expected = {int(r.stats["feature"]): feature_page(report_examples(r), links, neighbours[int(r.stats["feature"])],
                                                          note=note())
                    for r in data.feature_batch(DID, features)}
    finally:
        data.close()
    assert sorted(written) == features
    for feature in features:
        assert written[feature] == expected[feature], feature
    assert "&lt;|im_start|&gt;" not in written[0]  # special tokens hidden, as on the live page
    assert any('class="cut"' in page for page in written.values())
    assert "unparsed answers" in written[2] and "&lt;failed&gt;" in written[4]


def test_the_report_writes_the_same_pages(hostile: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    shutil.copy(hostile, store)
    with duckdb.connect(str(store)) as con:  # the overview's score histogram does not take a NaN score
        con.execute("UPDATE scores SET score = NULL WHERE isnan(score)")
    export(store, "html", tmp_path / "site")
    data = BrowserData(store)
    try:
        links = StaticLinks().at_depth(2)
        for record in data.feature_batch(DID, [0, 7, 11, N - 1]):
            feature = int(record.stats["feature"])
            neighbours = (feature - 1 if feature else None, feature + 1 if feature + 1 < N else None)
            page = (tmp_path / "site" / "features" / DID / f"{feature}.html").read_text(encoding="utf-8")
            assert page == feature_page(report_examples(record), links, neighbours, note=note())
    finally:
        data.close()
