"""The static HTML export of one code tree against another's, interleaved on one store.

Run: PYTHONPATH=. .venv/bin/python benchmarks/html_export_ab.py --before /tmp/main-copy
     [--after .] [--store PATH] [--slice 4096] [--rounds 3]

``--before`` and ``--after`` are folders holding a featurelens tree (``git archive`` of a
commit). Each round exports the same ``--slice`` features at the end of the store's first
dictionary (``feature >= max - slice``) once with each tree, in a fresh process each
(``PYTHONPATH`` set to the tree), in alternating order so both see the same load drift.
A child times ``export(...)`` alone by CPU and wall time (its imports are not counted;
the export's fixed costs, the list pages and the whole dictionary's overview, are). The
store is only read. It prints features a second per run, the medians and the ratio
after / before of the median CPU rates, and whether the two trees wrote the same files
(sha256 of every file of the last run of each, the manifest aside); on a shared machine the CPU rates move less
with the load of others than the wall rates, and the load average is printed with them.

``--stages`` times a page's three stages instead, by CPU, over the same features: reading
(``feature_batch``, 200 features a query), rendering (``feature_page`` of the report's
windows) and writing (the tree's own way: ``Staging.write_chunk`` where the tree has it,
else ``Staging.write_text`` per page), in ms per feature. A tree with
``featurelens.export.html_pages`` reads and renders in one pass (``PageWriter.pages``, 200
features a batch), all of it counted as rendering (its reading shows as 0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
from featurelens.export.runner import export
store, out, where = sys.argv[1:4]
wall, cpu = time.perf_counter(), time.process_time()
export(Path(store), "html", Path(out), where=where)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""

STAGES = """
import json, shutil, sys, tempfile, time
from pathlib import Path
from featurelens.browser.links import StaticLinks
from featurelens.browser.queries import BrowserData
from featurelens.browser.render_feature import feature_page
from featurelens.export.html_windows import note, report_examples
from featurelens.export.staging import Staging
store, out, where = sys.argv[1:4]
lo = int(where.split(">")[1])
data = BrowserData(store)
did = data.dictionaries()[0]["dictionary_id"]
features = list(range(lo + 1, lo + 1 + int(sys.argv[4])))
deep = StaticLinks().at_depth(2)
try:  # a tree that writes report pages in batches reads and draws them in one pass
    from featurelens.export.html_pages import PageWriter
except ImportError:
    PageWriter = None
t0 = time.process_time()
records = []
if PageWriter is None:
    with data.session():
        for i in range(0, len(features), 200):
            records += data.feature_batch(did, features[i:i + 200])
    t1 = time.process_time()
    pages = [feature_page(report_examples(r), deep, (None, None), note=note()) for r in records]
else:
    t1 = t0
    writer = PageWriter(data, did, deep, note())
    pages = []
    with data.session():
        for i in range(0, len(features), 200):
            chunk = features[i:i + 200]
            pages += [p for _, p in writer.pages(chunk, {f: (None, None) for f in chunk})]
    records = pages
t2 = time.process_time()
folder = Path(out)
staging = Staging(folder, folder, "x", False)
if hasattr(staging, "write_chunk"):
    for k in range(0, len(pages), 200):
        staging.write_chunk(f"c{k}", ((f"features/{i}.html", p.encode("utf-8")) for i, p in enumerate(pages[k:k + 200], k)))
else:
    for i, p in enumerate(pages):
        staging.write_text(f"features/{i}.html", p)
t3 = time.process_time()
n = len(records)
print(json.dumps({"read": 1000 * (t1 - t0) / n, "render": 1000 * (t2 - t1) / n, "write": 1000 * (t3 - t2) / n}))
"""


def stages(tree: Path, store: Path, where: str, folder: Path, n: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(dir=folder))
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    done = subprocess.run([sys.executable, "-c", STAGES, str(store), str(out), where, str(n)], env=env,
                          capture_output=True, text=True, check=True, cwd=tree)  # "-c" puts the working folder first on sys.path
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(tree: Path, store: Path, where: str, folder: Path) -> dict[str, float]:
    """One export by ``tree``: its times, and ``files``, the sha256 of every file it wrote
    (the manifest aside), by path; the folder is removed."""
    out = Path(tempfile.mkdtemp(dir=folder)) / "site"
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    done = subprocess.run([sys.executable, "-c", CHILD, str(store), str(out), where], env=env,
                          capture_output=True, text=True, check=True, cwd=tree)  # "-c" puts the working folder first on sys.path
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["files"] = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                       for p in sorted(out.rglob("*")) if p.is_file() and p.name != "featurelens-export.json"}
    shutil.rmtree(out.parent)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path("."))
    parser.add_argument("--store", type=Path, default=Path("/tmp/fe-1m.duckdb"))
    parser.add_argument("--slice", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="time read / render / write per page instead")
    args = parser.parse_args()
    args.store, args.before, args.after = args.store.resolve(), args.before.resolve(), args.after.resolve()
    import duckdb

    with duckdb.connect(str(args.store), read_only=True) as con:
        top = con.execute("SELECT max(feature) FROM features").fetchone()[0]
    where = f"feature > {top - args.slice}"
    if args.stages:
        return stage_rounds(args, where)
    rates: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    files: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for side in order:
                tree = args.before if side == "before" else args.after
                t = run(tree, args.store, where, Path(folder))
                files[side] = t["files"]
                rates[side].append((args.slice / t["wall"], args.slice / t["cpu"]))
                print(f"round {round_ + 1} {side:6s} {args.slice / t['wall']:8,.0f} / {args.slice / t['cpu']:8,.0f} "
                      f"features/s (wall / CPU), load average {os.getloadavg()[0]:.1f}", flush=True)
    med = {side: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for side, rs in rates.items()}
    for side, (wall, cpu) in med.items():
        print(f"median {side:6s} {wall:8,.0f} / {cpu:8,.0f} features/s (wall / CPU)")
    print(f"after / before, median CPU rate: {med['after'][1] / med['before'][1]:.2f}x; "
          f"wall: {med['after'][0] / med['before'][0]:.2f}x")
    differ = sorted(name for name in files["before"].keys() | files["after"].keys()
                    if files["before"].get(name) != files["after"].get(name))
    print(f"files: {len(files['after']):,} written by after, {len(files['before']):,} by before; "
          + (f"{len(differ):,} differ, e.g. {differ[:3]}" if differ else "every file identical (sha256)"))


def stage_rounds(args: argparse.Namespace, where: str) -> None:
    """The ``--stages`` runs: ms per feature of each stage, medians and ratios."""
    times: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for side in (["before", "after"] if round_ % 2 == 0 else ["after", "before"]):
                tree = args.before if side == "before" else args.after
                t = stages(tree, args.store, where, Path(folder), args.slice)
                times[side].append(t)
                print(f"round {round_ + 1} {side:6s} read {t['read']:.3f}  render {t['render']:.3f}  "
                      f"write {t['write']:.3f} ms/feature (CPU), load average {os.getloadavg()[0]:.1f}", flush=True)
    med = {side: {k: statistics.median(t[k] for t in ts) for k in ("read", "render", "write")}
           for side, ts in times.items()}
    for side, m in med.items():
        total = sum(m.values())
        print(f"median {side:6s} read {m['read']:.3f}  render {m['render']:.3f}  write {m['write']:.3f}  "
              f"total {total:.3f} ms/feature = {1000 / total:,.0f} features/s (CPU)")
    ratios = "  ".join(f"{k} {med['before'][k] / med['after'][k]:.2f}x" if med["after"][k] else f"{k} -"
                       for k in ("read", "render", "write"))  # a batch writer's reading is in its rendering
    print(f"before / after, median CPU per feature: {ratios}  total "
          f"{sum(med['before'].values()) / sum(med['after'].values()):.2f}x")


if __name__ == "__main__":
    main()
