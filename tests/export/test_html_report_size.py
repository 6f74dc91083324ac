"""The static HTML report stays small: unlit tokens drawn as text runs, a selection of
windows cut around their peak, one shared stylesheet; and it still says what it left
out, keeps every peak and stays free of scripts. Checked on a real store whose windows
are as long as a run's (64 tokens, 20 top / 20 quantile in 10 bins / 20 random)."""

from __future__ import annotations

import html
import re
from itertools import pairwise
from pathlib import Path

import duckdb
import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.browser.queries import BrowserData
from featurelens.export.html_windows import AFTER, BEFORE, RANDOM, TOP, cut_window, note
from featurelens.export.runner import export

DID = "smollm2-l6-topk"
N = 40
SEQ = 64


@pytest.fixture(scope="module")
def run_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-size") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=N, n_sequences=256, seq_len=SEQ, n_top=20, n_quantile=20, n_random=20)
    con = duckdb.connect(str(path))
    try:  # a run keeps two windows in each of 10 activation quantiles
        con.execute("UPDATE examples SET quantile = rank // 2 WHERE kind = 'quantile'")
    finally:
        con.close()
    return path


@pytest.fixture(scope="module")
def site(run_like: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-site") / "site"
    export(run_like, "html", out)
    return out


def _windows(page: str, kind: str) -> list[str]:
    section = page.split(f'class="examples {kind}"')[1].split("</section>")[0]
    return re.findall(r'<span class="window">(.*?)</span></li>', section)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_report_is_under_20_kb_per_feature(site: Path) -> None:
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert total / N < 20_000, f"{total / N:.0f} bytes per feature"
    assert [p.name for p in (site / "static").iterdir()] == ["style.css"]
    assert all("../../static/style.css" in p.read_text(encoding="utf-8")
               for p in (site / "features" / DID).glob("*.html"))


def test_unlit_tokens_are_runs_not_spans(site: Path, run_like: Path) -> None:
    page = (site / "features" / DID / "2.html").read_text(encoding="utf-8")
    for fragment in _windows(page, "top"):
        pieces = re.findall(r'<span class="(tok[^"]*)"[^>]*>', fragment)
        # runs alternate with lit tokens: never two plain runs side by side
        assert not any(a == b == "tok" for a, b in pairwise(pieces)), pieces
        assert len(pieces) <= 2 * fragment.count('class="tok on"') + 1


def test_windows_are_cut_around_the_peak_and_keep_it(site: Path, run_like: Path) -> None:
    data = BrowserData(run_like)
    try:
        record = data.feature(DID, 2)
    finally:
        data.close()
    assert record is not None
    page = (site / "features" / DID / "2.html").read_text(encoding="utf-8")
    shown = _windows(page, "top")
    assert len(shown) == TOP
    for fragment, row in zip(shown, record.examples["top"]):
        peak = int(row["max_position"])
        start = min(max(0, peak - BEFORE), SEQ - (BEFORE + 1 + AFTER))
        kept = row["token_strs"][start:start + BEFORE + 1 + AFTER]
        text = _text(fragment)
        assert text.strip("…") == "".join(kept).replace("\n", "↵")
        assert text.startswith("…") == (start > 0) and text.endswith("…") == (start + BEFORE + 1 + AFTER < SEQ)
        assert row["token_strs"][peak].replace("\n", "↵") in re.findall(r'class="tok on"[^>]*>([^<]*)<', fragment)
    assert note() in page


def test_one_window_per_quantile_and_a_few_random(site: Path) -> None:
    page = (site / "features" / DID / "5.html").read_text(encoding="utf-8")
    labels = re.findall(r'data-kind="quantile"[^>]*><span class="label"[^>]*>(q\d+) ', page)
    assert labels == [f"q{q}" for q in range(10)]
    assert len(_windows(page, "random")) == RANDOM


def test_report_pages_carry_no_script(site: Path) -> None:
    for page in site.rglob("*.html"):
        body = page.read_text(encoding="utf-8")
        assert "<script" not in body


def test_cut_window_shifts_at_the_edges_and_leaves_short_windows_alone() -> None:
    row = {"token_strs": [f"t{i}" for i in range(64)], "activations": [0.0] * 64, "max_position": 2}
    first = cut_window(row, before=4, after=3)
    assert first["token_strs"] == [f"t{i}" for i in range(8)]
    assert (first["cut_before"], first["cut_after"]) == (0, 56)
    last = cut_window({**row, "max_position": 63}, before=4, after=3)
    assert last["token_strs"][-1] == "t63" and (last["cut_before"], last["cut_after"]) == (56, 0)
    middle = cut_window({**row, "max_position": 30, "activations": [0.0] * 30 + [5.0] + [0.0] * 33},
                        before=4, after=3)
    assert middle["token_strs"][4] == "t30" and middle["activations"][4] == 5.0
    short = {"token_strs": ["a", "b"], "activations": [1.0, 0.0], "max_position": 0}
    assert cut_window(short, before=4, after=3) == {**short, "cut_before": 0, "cut_after": 0}
