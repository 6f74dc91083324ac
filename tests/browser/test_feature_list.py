"""The feature list sorts and filters, its search matches explanation text and top
tokens, and the overview page counts and plots the dictionary (real store, real server)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pytest
from synthetic_store import fill_store, serving

import featurelens
from featurelens.browser.feature_list import ListRequest
from featurelens.browser.overview import load_overview
from featurelens.browser.queries import BrowserData

DID = "smollm2-l6-topk"
N = 60


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("list") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=N, explained_every=2)
        # A second scorer on a few features, one undefined score and one failure.
        detection = [(0, 0.9), (2, 0.55), (4, 0.75), (6, None)]
        ids = store.sql(f"SELECT feature, explanation_id FROM explanations WHERE dictionary_id = '{DID}' "
                        "AND explainer = 'default'").rows()
        by_feature = dict(ids)
        store.insert("scores", pa.table({
            "score_id": [f"{by_feature[f]}:detection" for f, _ in detection],
            "explanation_id": [by_feature[f] for f, _ in detection],
            "dictionary_id": [DID] * 4, "feature": pa.array([f for f, _ in detection], pa.int32()),
            "scorer": ["detection"] * 4, "llm": ["local:smollm2"] * 4,
            "score": pa.array([s for _, s in detection], pa.float64()),
            "status": ["ok", "ok", "ok", "undefined"], "n_parse_failures": pa.array([0] * 4, pa.int32()),
        }))
        store.insert("failures", pa.table({"stage": ["score:detection"], "dictionary_id": [DID],
                                           "feature": pa.array([8], pa.int32()), "reason": ["no answer"]}))
    return path


@pytest.fixture(scope="module")
def data(filled: Path):
    browser = BrowserData(filled)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def base(filled: Path):
    with serving(filled) as url:
        yield url


def _get(base: str, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(base + path.lstrip("/"), timeout=10) as response:
        return response.read().decode()


def _listed(data: BrowserData, size: int = 100, **query: str) -> list[dict]:
    request = ListRequest.from_query({k: [v] for k, v in query.items()}, data.scorers(DID))
    return data.feature_list(DID, request, 0, size).rows


def test_sorts_by_each_statistic_both_ways(data: BrowserData) -> None:
    for key in ("density", "max_activation", "fire_count"):
        down = [r[key] for r in _listed(data, sort=key) if r[key] is not None]
        assert down == sorted(down, reverse=True) and len(down) >= N - 1
        up = [r[key] for r in _listed(data, sort=key, order="asc") if r[key] is not None]
        assert up == sorted(up)
    truth = data.query("SELECT feature FROM features WHERE dictionary_id = ? ORDER BY density DESC, feature "
                       "LIMIT 10", [DID])
    assert [r["feature"] for r in _listed(data, size=10, sort="density")] == [r["feature"] for r in truth]


def test_sorts_by_best_score_per_scorer_unscored_last(data: BrowserData) -> None:
    rows = _listed(data, sort="score:detection")
    assert [r["feature"] for r in rows[:3]] == [0, 4, 2]  # 0.9, 0.75, 0.55; undefined 6 is not a score
    assert all("detection" not in r["scores"] for r in rows[3:])
    assert rows[0]["scores"]["detection"] == pytest.approx(0.9) and "simulation" in rows[0]["scores"]
    sim = [r["scores"].get("simulation") for r in _listed(data, sort="score:simulation")]
    present = [s for s in sim if s is not None]
    assert present == sorted(present, reverse=True) and sim[:len(present)] == present


def test_filters_explained_or_not(data: BrowserData) -> None:
    explained = {r["feature"] for r in _listed(data, explained="yes")}
    missing = {r["feature"] for r in _listed(data, explained="no")}
    assert explained == {f for f in range(0, N, 2) if f != 3} and explained.isdisjoint(missing)
    assert explained | missing == set(range(N))
    assert all(r["text"] is None for r in _listed(data, explained="no"))


def test_search_matches_explanation_text_and_top_tokens(data: BrowserData) -> None:
    cats = {r["feature"] for r in _listed(data, q="CATS near")}
    assert cats == {f for f in range(0, N, 2) if f % 8 == 0}
    peak = data.query(
        "SELECT x.feature, s.token_strs[x.max_position + 1] AS token FROM examples x JOIN sequences s "
        "USING (corpus_id, sequence_id) WHERE x.dictionary_id = ? AND x.kind = 'top' AND x.feature = 7 "
        "AND x.rank = 0", [DID])[0]
    found = {r["feature"] for r in _listed(data, q=peak["token"].strip() or peak["token"])}
    assert 7 in found  # feature 7 is not explained: only its top token can match
    assert _listed(data, q="%") == [] and _listed(data, q="_") == []  # literal, not LIKE wildcards
    assert _listed(data, q="no-such-word-anywhere") == []


def test_unknown_parameters_fall_back_to_feature_order() -> None:
    request = ListRequest.from_query({"sort": ["density; DROP TABLE features"], "explained": ["maybe"],
                                      "order": ["sideways"]}, ["simulation"])
    assert request.sort == "feature" and request.explained == "any" and not request.descending
    assert ListRequest.from_query({"sort": ["score:nope"]}, ["simulation"]).sort == "feature"
    assert ListRequest.from_query({"sort": ["score:simulation"]}, ["simulation"]).descending


def test_list_page_has_controls_score_columns_and_keeps_filters_across_pages(base: str) -> None:
    body = _get(base, f"/dictionary/{DID}?sort=density&explained=no")
    assert '<form class="filters"' in body and '<option value="score:detection"' in body
    assert "<th>" in body and "best detection" in body and "best simulation" in body
    assert body.count('<tr><td class="num"><a href="/feature/') == len(range(1, N, 2))  # odd: unexplained
    assert f'href="/dictionary/{DID}/overview"' in body
    first = _get(base, f"/dictionary/{DID}?sort=fire_count&order=asc")
    nxt = re.search(r'rel="next" href="([^"]+)"', first).group(1)
    assert "sort=fire_count" in nxt and "order=asc" in nxt and "page=1" in nxt
    hostile = _get(base, f"/dictionary/{DID}?q=" + urllib.parse.quote("<script>x</script>'"))
    assert "<script>x" not in hostile and "&lt;script&gt;x" in hostile


def test_overview_counts_and_labelled_histograms(base: str, data: BrowserData) -> None:
    body = _get(base, f"/dictionary/{DID}/overview")
    cells = dict(re.findall(r"<tr><th>([^<]+)</th><td class=\"num\">([^<]+)</td></tr>", body))
    assert cells["features stored"] == str(N) and cells["dead (never fired)"] == "1"
    assert cells["explained"] == str(len([f for f in range(0, N, 2) if f != 3]))
    assert cells["score undefined"] == "1" and cells["with failures"] == "1"
    charts = re.findall(r'<svg class="chart".*?</svg>', body)
    assert len(charts) == 3  # density + simulation + detection
    assert "density (fraction of tokens, log scale)" in charts[0] and ">features</text>" in charts[0]
    bins = data.query("SELECT count(DISTINCT floor(log10(density) * 4)) AS n FROM features "
                      "WHERE dictionary_id = ? AND density > 0", [DID])[0]["n"]
    assert charts[0].count("<rect ") >= bins
    bars = [int(n) for n in re.findall(r": (\d+)</title></rect>", charts[0])]
    assert sum(bars) == N - 1  # every live feature in exactly one bin
    assert "best detection score per feature" in body and "1 dead features" in body
    detection = [c for c in charts if "detection" in c][0]
    assert sum(int(n) for n in re.findall(r": (\d+)</title></rect>", detection)) == 3


def test_overview_leaves_out_scores_that_are_not_numbers(tmp_path: Path) -> None:
    """A store whose scores table holds NaN or infinity under status 'ok' (written by another
    tool, or damaged) still gives an overview; the histogram counts the finite scores only."""
    path = tmp_path / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=8, explained_every=1)
        eids = dict(store.sql(f"SELECT feature, explanation_id FROM explanations WHERE dictionary_id = '{DID}' "
                              "AND explainer = 'default'").rows())
        bad = [(0, float("nan")), (1, float("inf")), (2, 0.5)]
        store.insert("scores", pa.table({
            "score_id": [f"{eids[f]}:odd" for f, _ in bad], "explanation_id": [eids[f] for f, _ in bad],
            "dictionary_id": [DID] * 3, "feature": pa.array([f for f, _ in bad], pa.int32()),
            "scorer": ["odd"] * 3, "llm": ["x"] * 3, "score": pa.array([s for _, s in bad], pa.float64()),
            "status": ["ok"] * 3, "n_parse_failures": pa.array([0] * 3, pa.int32()),
        }))
    browser = BrowserData(path)
    try:
        dictionary = next(d for d in browser.dictionaries() if d["dictionary_id"] == DID)
        overview = load_overview(browser.query, dictionary)
    finally:
        browser.close()
    edges, counts, n, mean = overview.scores["odd"]
    assert (sum(counts), n, mean) == (1, 1, 0.5)


def test_feature_histogram_axes_are_labelled(base: str) -> None:
    body = _get(base, f"/feature/{DID}/5")
    svg = re.search(r'<svg class="histogram".*?</svg>', body).group(0)
    assert ">tokens</text>" in svg and ">activation" in svg and svg.count('class="axis"') == 2
