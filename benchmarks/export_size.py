"""Bytes per feature of the static HTML report, before and after the size work, in one run.

"Before" is the report as it was drawn until now: a ``<span>`` per token and every
window the feature page shows (20 top, 20 quantile, 5 random), whole. "After" is the
report as exported now: runs of unlit tokens as one text run, the 10 strongest windows,
one per activation quantile and 3 random, cut to 32 tokens around the peak. Both count
every file of the exported folder (pages, lists, overview, stylesheet) and divide by
the number of features.

The store is either a run's store (``--store``, e.g. one written by ``featurelens run``
with its defaults: 64-token windows, 50 top / 50 quantile / 50 random kept) or, by
default, a synthetic store with run-sized windows (tests/synthetic_store.py).

    .venv/bin/python benchmarks/export_size.py [--store PATH] [--features 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_store import fill_store

import featurelens
import featurelens.export.html as html_export
from featurelens.browser import window_html
from featurelens.export.runner import export


def synthetic(path: Path, n: int) -> None:
    """A store shaped like a run's: 64-token windows, 20 top, 2 per quantile bin, 20 random."""
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=n, n_sequences=256, seq_len=64, n_top=20, n_quantile=20, n_random=20)
    con = duckdb.connect(str(path))
    try:
        con.execute("UPDATE examples SET quantile = rank // 2 WHERE kind = 'quantile'")
    finally:
        con.close()


def folder_bytes(folder: Path) -> tuple[int, int]:
    """Total bytes of every file under ``folder``, and the largest feature page."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    pages = [p.stat().st_size for p in files if p.suffix == ".html" and p.stem.isdigit()]
    return sum(p.stat().st_size for p in files), max(pages, default=0)


def measure(store: Path, out: Path, where: str | None, before: bool) -> tuple[int, int, float]:
    saved = (window_html.window, html_export.report_examples, html_export.note)
    if before:  # every token its own element, every window whole
        window_html.window = lambda tokens, acts, *rest: "".join(
            saved[0]([t], [a], *rest) for t, a in zip(tokens, acts))
        html_export.report_examples = lambda record: record
        html_export.note = lambda: None
    try:
        started = time.perf_counter()
        export(store, "html", out, where=where, processes=1)
        seconds = time.perf_counter() - started
    finally:
        window_html.window, html_export.report_examples, html_export.note = saved
    total, largest = folder_bytes(out)
    return total, largest, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a run's store (default: a synthetic one)")
    parser.add_argument("--features", type=int, default=500, help="features to export")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.store:
            store, label = args.store, f"run store {args.store.name}"
        else:
            store, label = root / "synthetic.duckdb", "synthetic store, run-sized windows"
            synthetic(store, args.features)
        where = f"feature < {args.features}"
        with featurelens.open_store(store, read_only=True) as s:
            n = int(s.sql(f"SELECT count(*) AS n FROM features WHERE {where}")["n"][0])
        rows = {}
        for name, before in (("before", True), ("after", False)):
            rows[name] = measure(store, root / name, where, before)
        print(f"HTML report of {n} features ({label})")
        for name, (total, largest, seconds) in rows.items():
            print(f"  {name:6}: {total / n / 1000:7.1f} KB per feature, largest page {largest / 1000:6.1f} KB, "
                  f"{total / 1e6:7.1f} MB in all, {seconds:5.1f} s")
        ratio = rows["before"][0] / rows["after"][0]
        print(f"  ratio bytes before / after = {ratio:.1f}")
        print(f"  at 4,608 features: {rows['after'][0] / n * 4608 / 1e6:.0f} MB (was 452 MB reported)")


if __name__ == "__main__":
    main()
