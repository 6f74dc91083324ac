"""featurelens export: Neuronpedia JSON, Parquet tables and the static HTML report,
checked against the real store they came from; selection, bad input, resume."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest
from synthetic_store import explanation_text, fill_store

import featurelens
from featurelens.browser.queries import BrowserData
from featurelens.core.errors import FeaturelensError
from featurelens.export.neuronpedia import layout as neuronpedia
from featurelens.export.runner import export

DID = "smollm2-l6-topk"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=30)
    return path


def _lines(folder: Path) -> list[dict]:
    out = []
    for batch in sorted(folder.glob("v1/*/*/features/batch-*.jsonl.gz")):
        with gzip.open(batch, "rt", encoding="utf-8") as handle:
            out.extend(json.loads(line) for line in handle)
    return out


def test_neuronpedia_export_has_every_feature(filled: Path, tmp_path: Path) -> None:
    """Row contents are checked against the schema in test_export_neuronpedia_import.py."""
    message = export(filled, "neuronpedia", tmp_path / "np")
    assert "30 features" in message
    assert [int(f["index"]) for f in _lines(tmp_path / "np")] == list(range(30))


def test_selection_by_where_and_dictionary(filled: Path, tmp_path: Path) -> None:
    export(filled, "neuronpedia", tmp_path / "np", dictionary_id=DID, where="feature % 10 = 0")
    assert [int(f["index"]) for f in _lines(tmp_path / "np")] == [0, 10, 20]


@pytest.mark.parametrize("kwargs, message", [
    ({"where": "densty < 0.1"}, "--where 'densty < 0.1' is not a valid condition"),
    ({"dictionary_id": "nope"}, "There is no dictionary 'nope'"),
    ({"where": "density > 5"}, "No feature matches the selection"),
])
def test_bad_selection_is_one_sentence_and_writes_nothing(filled: Path, tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(FeaturelensError, match=re.escape(message)) as error:
        export(filled, "html", tmp_path / "out", **kwargs)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_parquet_one_file_per_table_with_all_rows(filled: Path, tmp_path: Path) -> None:
    export(filled, "parquet", tmp_path / "pq")
    with featurelens.open_store(filled, read_only=True) as store:
        for table in ("features", "examples", "explanations", "scores", "sequences", "dictionaries"):
            expected = store.sql(f"SELECT count(*) AS n FROM {table}")["n"][0]
            assert pl.read_parquet(tmp_path / "pq" / f"{table}.parquet").height == expected, table
        original = store.sql("SELECT * FROM features ORDER BY feature")
    assert pl.read_parquet(tmp_path / "pq" / "features.parquet").sort("feature").equals(original)


def test_parquet_selection_keeps_referenced_rows_only(filled: Path, tmp_path: Path) -> None:
    export(filled, "parquet", tmp_path / "pq", where="feature < 2")
    folder = tmp_path / "pq"
    assert pl.read_parquet(folder / "features.parquet")["feature"].sort().to_list() == [0, 1]
    examples = pl.read_parquet(folder / "examples.parquet")
    assert set(examples["feature"].to_list()) == {0, 1}
    sequences = pl.read_parquet(folder / "sequences.parquet")
    assert set(sequences["sequence_id"].to_list()) == set(examples["sequence_id"].to_list())
    assert set(pl.read_parquet(folder / "explanations.parquet")["feature"].to_list()) == {0, 1}


def test_html_report_links_resolve_and_text_is_escaped(filled: Path, tmp_path: Path) -> None:
    export(filled, "html", tmp_path / "site")
    site = tmp_path / "site"
    pages = list(site.rglob("*.html"))
    assert len(pages) == 30 + 3  # features, the dictionary list and overview, the home page
    for page in pages:
        body = page.read_text(encoding="utf-8")
        assert "<script" not in body
        for href in re.findall(r'href="([^"]+)"', body):
            assert not href.startswith(("http:", "https:", "/")), href
            assert (page.parent / href).resolve().is_file(), f"{page}: broken link {href}"
    feature1 = (site / "features" / DID / "1.html").read_text(encoding="utf-8")
    assert "alternative &lt;b&gt;label&lt;/b&gt; &amp; more" in feature1
    assert 'class="tok on"' in feature1 and "<svg class=\"histogram\"" in feature1
    assert (site / "static" / "style.css").is_file()


def test_html_uses_the_same_renderer_as_serve(filled: Path, tmp_path: Path) -> None:
    """The report's feature page equals the live page, links aside, once the live page
    shows the report's selection of windows (export/html_windows.py)."""
    from featurelens.browser.links import ServerLinks
    from featurelens.browser.render_feature import feature_page
    from featurelens.export.html_windows import note, report_examples

    export(filled, "html", tmp_path / "site")
    data = BrowserData(filled)
    try:
        live = feature_page(report_examples(data.feature(DID, 5)), ServerLinks(), data.neighbours(DID, 5),
                            note=note())
    finally:
        data.close()
    static = (tmp_path / "site" / "features" / DID / "5.html").read_text(encoding="utf-8")
    strip = lambda html: re.sub(r'href="[^"]*"|<header>.*?</header>', "", html)  # noqa: E731
    assert strip(live) == strip(static)


def test_interrupted_export_resumes_without_rewriting(filled: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []
    interrupted: list[bool] = []
    original = BrowserData.feature_stats  # read once per batch

    def flaky(self, dictionary_id, features):
        calls.append(list(features))
        if len(calls) == 3 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return original(self, dictionary_id, features)

    monkeypatch.setattr(BrowserData, "feature_stats", flaky)
    monkeypatch.setattr(neuronpedia, "write", lambda data, staging, keys, batch_size=1000, **options:
                        _original_write(data, staging, keys, batch_size=7, **options))
    out = tmp_path / "np"
    with pytest.raises(KeyboardInterrupt):
        export(filled, "neuronpedia", out)
    assert not out.exists()
    partial = tmp_path / "np.partial" / "v1" / "smollm2-135m" / f"6-{DID}" / "features"
    assert sorted(p.name for p in partial.glob("*.gz")) == ["batch-00000.jsonl.gz", "batch-00001.jsonl.gz"]
    calls.clear()
    export(filled, "neuronpedia", out)
    assert calls == [list(range(14, 21)), list(range(21, 28)), [28, 29]]  # only the missing batches
    assert not (tmp_path / "np.partial").exists()
    assert [int(f["index"]) for f in _lines(out)] == list(range(30))


_original_write = neuronpedia.write


def test_reexport_replaces_and_foreign_folders_are_refused(filled: Path, tmp_path: Path) -> None:
    out = tmp_path / "np"
    export(filled, "neuronpedia", out, where="feature < 5")
    export(filled, "neuronpedia", out, where="feature >= 25")
    assert [int(f["index"]) for f in _lines(out)] == [25, 26, 27, 28, 29]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FeaturelensError, match="not a featurelens export"):
        export(filled, "html", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_export_command_line(cli, filled: Path, tmp_path: Path) -> None:
    result = cli("export", "--store", filled, "--format", "html", "--output", tmp_path / "r",
                 "--where", "feature < 3")
    assert result.exit_code == 0, result.output
    assert "Exported 3 feature pages" in result.output
    bad = cli("export", "--store", filled, "--format", "parquet", "--output", tmp_path / "p",
              "--where", "no_such_column = 1")
    assert bad.exit_code == 1 and bad.output.startswith("Error: --where")


def test_dictionary_ids_with_path_characters_export_and_serve(tmp_path: Path) -> None:
    """Ids like 'runs/sae v2:layer6' become safe folder names and quoted URLs."""
    import urllib.request
    from urllib.parse import quote

    from featurelens.browser.links import file_slug
    from featurelens.browser.server import make_server, url_of
    from featurelens.testing.servers import start_in_thread


    odd = "runs/sae v2:layer6"
    path = tmp_path / "odd.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=4, dictionary_id=odd)
    export(path, "html", tmp_path / "site")
    slug = file_slug(odd)
    assert "/" not in slug and " " not in slug and slug != file_slug("runs_sae_v2_layer6")
    page = tmp_path / "site" / "features" / slug / "2.html"
    for href in re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8")):
        assert (page.parent / href).resolve().is_file(), href
    export(path, "neuronpedia", tmp_path / "np")
    assert [f["index"] for f in _lines(tmp_path / "np")] == ["0", "1", "2", "3"]
    source = json.loads(next((tmp_path / "np").glob("v1/*/*/source.jsonl")).read_text())
    assert source["notes"] == f"featurelens dictionary {odd}" and "/" not in source["id"]
    server = make_server(path, "127.0.0.1", 0)
    start_in_thread(server)
    try:
        with urllib.request.urlopen(f"{url_of(server)}feature/{quote(odd, safe='')}/2", timeout=10) as response:
            assert response.status == 200 and explanation_text(2) in response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()
