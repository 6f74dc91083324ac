"""The feature browser over HTTP: a real server on 127.0.0.1 over a real DuckDB store."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import markupsafe
import pytest
from synthetic_store import explanation_text, fill_store, filled_store, serving

import featurelens
from featurelens.browser.render_feature import highlight_rgb
from featurelens.browser.server import make_server

DID = "smollm2-l6-topk"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filled_store(tmp_path_factory.mktemp("serve") / "store.duckdb", 120)


@pytest.fixture(scope="module")
def base(filled: Path):
    with serving(filled) as url:
        yield url


def get(base: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + path.lstrip("/"), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_home_lists_the_dictionary_with_counts(base: str) -> None:
    status, body = get(base, "/")
    assert status == 200
    assert f'href="/dictionary/{DID}"' in body
    assert "<td class=\"num\">120</td>" in body  # features stored
    assert "<td class=\"num\">119</td>" in body  # explained (feature 3 is dead)


def test_dictionary_listing_is_paginated_and_escaped(base: str) -> None:
    status, first = get(base, f"/dictionary/{DID}")
    assert status == 200
    assert first.count("<tr><td class=\"num\"><a href=\"/feature/") == 50
    assert f'rel="next" href="/dictionary/{DID}?page=1"' in first
    assert "<b>label</b>" not in first  # feature 1's second explanation is HTML-like text
    assert "alternative &lt;b&gt;label&lt;/b&gt; &amp; more" in first or explanation_text(1) in first
    status, last = get(base, f"/dictionary/{DID}?page=2")
    rows = re.findall(r'href="/feature/[^/]+/(\d+)"', last)
    assert [int(r) for r in rows] == list(range(100, 120))
    assert 'rel="next"' not in last and 'rel="prev"' in last


def test_feature_page_shows_everything_escaped(base: str, filled: Path) -> None:
    status, body = get(base, f"/feature/{DID}/1")
    assert status == 200
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<b>label</b>" not in body
    with featurelens.open_store(filled, read_only=True) as store:
        stats = store.sql(f"SELECT * FROM features WHERE dictionary_id = '{DID}' AND feature = 1").row(0, named=True)
        top = store.sql(f"SELECT activations, max_activation FROM examples WHERE dictionary_id = '{DID}' "
                        "AND feature = 1 AND kind = 'top' ORDER BY rank").to_dicts()
    # highlighted tokens: exact value on hover, colour from activation / feature max
    top_section = body.split('class="examples top"')[1].split("</section>")[0]
    on = [(int(h[:2], 16), int(h[2:4], 16), int(h[4:], 16), title) for h, title in
          re.findall(r'style="background:#([0-9a-f]{6})" title="([^"]+)"', top_section)]
    assert len(on) == sum(sum(1 for a in t["activations"] if a > 0) for t in top)
    first_peak = max(top[0]["activations"])
    expected = highlight_rgb(first_peak / stats["max_activation"])
    assert any(tuple(map(int, o[:3])) == expected and float(o[3]) == pytest.approx(first_peak, rel=1e-3)
               for o in on)
    # histogram with one bar per bin, logits, explanations and their scores
    assert body.count("<rect ") == len(stats["histogram_counts"])
    for token in stats["top_logits"] + stats["bottom_logits"]:
        assert str(markupsafe.escape(token.replace("\n", "↵"))) in body  # the templates' autoescape
    assert explanation_text(1) in body and body.count('class="explanation"') == 2
    assert body.count('<span class="scorer">simulation</span>') == 2
    assert 'class="examples quantile"' in body and 'class="examples random"' in body
    assert f'href="/feature/{DID}/0"' in body and f'href="/feature/{DID}/2"' in body


def test_dead_feature_page_says_so(base: str) -> None:
    status, body = get(base, f"/feature/{DID}/3")
    assert status == 200
    assert "never fired" in body and "Not explained yet" in body


def test_search_by_explanation_text_sorted_by_score(base: str) -> None:
    status, body = get(base, "/search?q=DOGS")
    assert status == 200
    features = [int(f) for f in re.findall(rf'href="/feature/{DID}/(\d+)"', body)]
    assert features and all(f % 8 == 1 for f in features)
    assert len(features) == len([f for f in range(120) if f % 8 == 1])
    scores = [float(s) for s in re.findall(r'class="num score">([-\d.]+)<', body)]
    assert scores == sorted(scores, reverse=True)
    _, none = get(base, "/search?q=" + urllib.parse.quote("no such words"))
    assert "No explanation matches" in none


def test_sql_box_reads_and_reports_errors_in_one_line(base: str) -> None:
    query = urllib.parse.quote("SELECT feature, density FROM features ORDER BY feature LIMIT 3")
    status, body = get(base, f"/sql?q={query}")
    assert status == 200 and "3 rows." in body and "<th>density</th>" in body
    status, body = get(base, "/sql?q=" + urllib.parse.quote("SELEC nonsense"))
    errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', body)
    assert status == 400 and len(errors) == 1 and "\n" not in errors[0] and errors[0].startswith("SQL error:")


@pytest.mark.parametrize("statement", [
    "DELETE FROM features",
    "CREATE TABLE evil (a INT)",
    "COPY features TO '/tmp/featurelens-evil.csv'",
    "SELECT * FROM read_text('/etc/hostname')",
    "ATTACH '/tmp/featurelens-evil.duckdb' AS evil",
    "SET enable_external_access = true",
])
def test_sql_box_cannot_write_or_touch_files(base: str, filled: Path, statement: str) -> None:
    status, body = get(base, "/sql?q=" + urllib.parse.quote(statement))
    assert status == 400 and 'class="error"' in body
    assert not Path("/tmp/featurelens-evil.csv").exists()
    assert not Path("/tmp/featurelens-evil.duckdb").exists()
    _, check = get(base, "/sql?q=" + urllib.parse.quote("SELECT count(*) AS n FROM features"))
    assert "<td>120</td>" in check


def test_large_sql_results_are_cut_off(base: str) -> None:
    status, body = get(base, "/sql?q=" + urllib.parse.quote("SELECT * FROM range(2000)"))
    assert status == 200 and body.count("<tr><td>") == 500 and "Showing the first 500 rows" in body


def test_unknown_pages_are_404_and_static_is_local(base: str) -> None:
    assert get(base, f"/feature/{DID}/99999")[0] == 404
    assert get(base, "/feature/nope/1")[0] == 404
    assert get(base, "/dictionary/nope")[0] == 404
    assert get(base, "/static/../server.py")[0] == 404
    status, css = get(base, "/static/style.css")
    assert status == 200 and ".tok" in css
    _, home = get(base, "/")
    assert "http://" not in home and "https://" not in home  # nothing from a CDN


def test_serve_refuses_a_missing_store_in_one_line(cli, tmp_path: Path) -> None:
    result = cli("serve", "--store", tmp_path / "missing.duckdb")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "There is no feature store" in result.output


def test_serve_reports_a_busy_port(filled: Path) -> None:
    first = make_server(filled, "127.0.0.1", 0)
    try:
        port = first.server_address[1]
        with pytest.raises(featurelens.core.errors.FeaturelensError, match="pick another --port"):
            make_server(filled, "127.0.0.1", port)
    finally:
        first.server_close()
        first.browser_data.close()


def test_search_index_and_sql_fallback_agree(filled: Path) -> None:
    from featurelens.browser.queries import BrowserData

    data = BrowserData(filled)
    try:
        assert not data.search_index.ready
        cold = {q: [data.search(q, page).rows for page in range(3)] for q in ("dogs", "", "FEATURE 1", "100%_x")}
        data.warm()
        assert data.search_index.ready
        warm = {q: [data.search(q, page).rows for page in range(3)] for q in cold}
    finally:
        data.close()
    assert warm == cold
    assert len(cold[""][0]) == 50 and len(cold["FEATURE 1"][0]) > 10 and cold["100%_x"][0] == []


def test_listing_pages_agree_for_gappy_feature_indices(tmp_path: Path) -> None:
    """Key-range paging (contiguous indices) and OFFSET paging (gaps) give the same pages."""
    from featurelens.browser.queries import BrowserData

    path = tmp_path / "gaps.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=75)
        store.execute("DELETE FROM features WHERE feature IN (10, 11, 60)")
    data = BrowserData(path)
    try:
        pages = [data.features(DID, p, size=20) for p in range(4)]
        assert [r["feature"] for p in pages for r in p.rows] == [f for f in range(75) if f not in (10, 11, 60)]
        assert [p.has_next for p in pages] == [True, True, True, False]
        assert data.neighbours(DID, 12) == (9, 13) and data.neighbours(DID, 74) == (73, None)
    finally:
        data.close()
    data = BrowserData(tmp_path / "gaps.duckdb")
    with featurelens.open_store(tmp_path / "dense.duckdb") as store:
        fill_store(store, n_features=75)
    dense = BrowserData(tmp_path / "dense.duckdb")
    try:
        assert [r["feature"] for r in dense.features(DID, 3, size=20).rows] == list(range(60, 75))
        assert dense.features(DID, 3, size=20).has_next is False and dense.features(DID, 2, size=20).has_next
        assert dense.neighbours(DID, 0) == (None, 1) and dense.neighbours(DID, 74) == (73, None)
    finally:
        dense.close()
        data.close()


def test_chunked_search_scan_equals_a_full_scan() -> None:
    import pyarrow as pa

    from featurelens.browser.search_index import SearchIndex

    texts = [f"{'Dog' if i % 3 == 0 else 'cat'} number {i}" for i in range(100)]
    table = pa.table({"dictionary_id": ["d"] * 100, "feature": list(range(100)), "text": texts,
                      "explainer": ["x"] * 100, "llm": ["l"] * 100, "score": [1 - i / 100 for i in range(100)]})
    index = SearchIndex()
    index.build(lambda sql: table)
    full = [r["feature"] for r in index.search("dog", 0, 1000, chunk=1000)]
    assert full == list(range(0, 100, 3))
    for offset, limit in [(0, 5), (5, 5), (30, 10), (40, 5)]:
        got = [r["feature"] for r in index.search("DOG", offset, limit, chunk=7)]
        assert got == full[offset:offset + limit]


@pytest.mark.slow  # a fresh interpreter imports torch & co.: ~5-20 s on a busy 2-core machine
def test_serve_command_runs_until_interrupted(filled: Path) -> None:
    """The real console script: prints its URL, serves, stops cleanly on Ctrl-C (SIGINT)."""
    import signal
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("featurelens")
    process = subprocess.Popen([str(exe), "serve", "--store", str(filled), "--port", "0"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = process.stderr.readline()
        while line and "Serving" not in line:
            line = process.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        status, body = get(match.group(1), "/")
        assert status == 200 and DID in body
    finally:
        process.send_signal(signal.SIGINT)
        out = process.communicate(timeout=20)[1]
    assert process.returncode == 0 and "Stopped." in out


def test_a_runaway_sql_query_is_stopped_with_one_sentence(filled: Path) -> None:
    import time

    from featurelens.browser.queries import BrowserData
    from featurelens.core.errors import FeaturelensError

    data = BrowserData(filled)
    try:
        started = time.perf_counter()
        with pytest.raises(FeaturelensError, match=r"ran longer than 0.5 s and was stopped") as error:
            data.sql("SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000) b", timeout_s=0.5)
        assert time.perf_counter() - started < 10 and "\n" not in str(error.value)
        assert data.sql("SELECT 42 AS answer").rows == [(42,)]  # the connection is still usable
    finally:
        data.close()
