"""An HTML report killed in the middle of a chunk of feature pages resumes without loss or
duplication: the chunks already marked whole are kept, the cut one is written again over
its half-written pages, and the finished report has the same bytes as one never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.export import html
from featurelens.export.html_pages import PageWriter
from featurelens.export.runner import export
from featurelens.export.staging import CHUNKS

DID = "smollm2-l6-topk"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=30)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "featurelens-export.json"}


def test_a_report_cut_mid_chunk_resumes_to_the_same_bytes(filled: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html, "BATCH", 7)
    export(filled, "html", tmp_path / "whole")
    drawn: list[int] = []
    real = PageWriter.page

    def cut_at_the_tenth(writer, stats, *args, **kwargs):
        drawn.append(int(stats["feature"]))
        if len(drawn) == 10:
            raise KeyboardInterrupt
        return real(writer, stats, *args, **kwargs)

    monkeypatch.setattr(PageWriter, "page", cut_at_the_tenth)
    out = tmp_path / "site"
    with pytest.raises(KeyboardInterrupt):
        export(filled, "html", out)
    partial = tmp_path / "site.partial"
    pages = partial / "features" / DID
    assert sorted(int(p.stem) for p in pages.glob("[0-9]*.html")) == list(range(9))
    assert len(list((partial / CHUNKS).iterdir())) == 1  # features 0-6; 7 and 8 wrote no marker
    (pages / "8.html").write_bytes((pages / "8.html").read_bytes()[:100])  # a write cut by the kill
    drawn.clear()
    monkeypatch.setattr(PageWriter, "page", lambda writer, stats, *a, **k: drawn.append(int(stats["feature"]))
                        or real(writer, stats, *a, **k))
    export(filled, "html", out)
    assert drawn == list(range(7, 30))  # every page once, the whole chunk 7-13 again
    assert not partial.exists() and not (out / CHUNKS).exists()
    assert _files(out) == _files(tmp_path / "whole")
