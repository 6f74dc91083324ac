"""Labeling throughput before and after a change, measured side by side in one run.

The engine now writes every answer to a response journal the moment it arrives (and an
attempt row per request). This script measures what that costs: it extracts the code of
a base commit (default: the commit before the durability change) into a temporary
folder, builds one benchmark store per version (each with its own schema), starts one
loopback stub server, and runs ``explain_features`` from each version in a fresh process,
alternating, ``--repeats`` times each; best of each, because the cores are shared.

    .venv/bin/python benchmarks/durability.py [--base fc8c283] [--features 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def extract(commit: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**clean, "FEATURELENS_LOAD_PLUGINS": ""}


def build(tree: Path, path: Path, n: int) -> None:
    code = (f"import sys; sys.path[:0] = [{str(tree)!r}, {str(tree / 'benchmarks')!r}]; "
            f"from labeling import build_store; build_store({str(path)!r}, {n})")
    subprocess.run([sys.executable, "-c", code], check=True, env=env(), cwd=tree)


def run(tree: Path, path: Path, url: str, n: int, concurrency: int) -> float:
    out = subprocess.run([sys.executable, str(tree / "benchmarks" / "labeling.py"), "--child", str(path),
                          url, str(n), str(concurrency)], capture_output=True, text=True, check=True,
                         env=env(), cwd=tree)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["failed"] == 0, row
    return float(row["features_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="fc8c283", help="commit to compare against")
    parser.add_argument("--features", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from labeling import start_stub

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    server, url = start_stub(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            before = extract(args.base, Path(tmp) / "before")
            trees = {f"before ({args.base})": before, f"after ({head}, working tree)": ROOT}
            stores = {}
            for name, tree in trees.items():
                stores[name] = Path(tmp) / f"{tree.name}.duckdb"
                build(tree, stores[name], args.features)
            print(f"{args.features:,} features, stub latency {args.latency * 1000:.0f} ms, best of "
                  f"{args.repeats} alternating runs (feat/s)")
            print("| concurrency | " + " | ".join(trees) + " | after / before |")
            print("|---|---|---|---|")
            for concurrency in args.concurrency:
                best = {name: 0.0 for name in trees}
                for _ in range(args.repeats):
                    for name, tree in trees.items():
                        best[name] = max(best[name], run(tree, stores[name], url, args.features, concurrency))
                first, second = best.values()
                print(f"| {concurrency} | {first:,.0f} | {second:,.0f} | {second / first:.2f} |", flush=True)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
