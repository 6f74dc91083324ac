"""CPU a fired feature of the batch API path, this tree against a reference commit, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/batch_cpu.py --store STORE [--features 32768]
     [--reference 6ceb242] [--workdir DIR]

``STORE`` is an extracted store (the real 1M one: /tmp/m1m-extract/million.duckdb, read
only: it is copied twice into the workdir). For each of two source trees (this one, and
``--reference``: a commit of this repository exported with ``git archive``) on its own
copy of the store and its own stub OpenAI Batch server (benchmarks/million.py's
LeanBatchServer, in this process), it runs ``featurelens explain --llm openai:gpt-4o-mini
--explainer token-activations --option features_per_request=1 --batch-api --limit N`` and
then ``featurelens batches collect``, each a process of its own, and prints each command's
CPU time (user + system of the child) a fired feature and the ratio reference / this tree.
The figures include each process's start (imports, about 2-3 s), which weighs less the
larger ``--features``.

Then it compares what the two runs stored: the explanations (without their random ids
and times), the llm_calls rows (without call ids and times) and the llm_cache rows must be
the same, else it exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from million import LeanBatchServer  # noqa: E402

#: What must be equal between the two runs' stores (random ids and times left out).
COMPARED = {
    "explanations": "SELECT dictionary_id, feature, explainer, llm, text, CAST(options AS VARCHAR), run_id "
                    "FROM explanations",
    "llm_calls": "SELECT cache_key, provider, model, purpose, dictionary_id, feature, status, error, "
                 "input_tokens, cached_input_tokens, output_tokens, cost_usd, latency_s, batch_id, run_id, "
                 "attempts FROM llm_calls",
    "llm_cache": "SELECT cache_key, CAST(response AS VARCHAR) FROM llm_cache",
}


def export_tree(rev: str, into: Path) -> Path:
    """The source of ``rev`` (a commit of this repository) unpacked under ``into``."""
    archive = into / "reference.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "reference", filter="data")
    return into / "reference"


def timed(args: list[str], env: dict[str, str], log: Path, tree: Path) -> tuple[float, float]:
    """Run one command in ``tree``; (wall s, CPU s of the child: user + system).

    The working directory is the tree measured: ``python -m`` puts it first on sys.path,
    ahead of PYTHONPATH, so a command started in this checkout would import this tree's
    featurelens whichever tree PYTHONPATH names."""
    before = os.times()
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tree)
    wall = time.perf_counter() - started
    after = os.times()
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}); see {log}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def run_tree(tree: Path, store: Path, features: int, work: Path, name: str) -> dict[str, tuple[float, float]]:
    server = LeanBatchServer()
    env = {**os.environ, **server.env(), "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'tests'}",
           "FEATURELENS_LOAD_PLUGINS": ""}
    fl = [sys.executable, "-m", "featurelens"]
    imported = subprocess.run([sys.executable, "-c", "import featurelens; print(featurelens.__file__)"], env=env,
                              cwd=tree, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(imported).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"the {name} commands would import {imported}, not the tree {tree}")
    try:
        out = {"submit": timed([*fl, "explain", "--llm", "openai:gpt-4o-mini", "--explainer", "token-activations",
                                "--option", "features_per_request=1", "--batch-api", "--no-progress",
                                "--limit", str(features), "--store", str(store)], env, work / f"{name}-submit.log",
                               tree),
               "collect": timed([*fl, "batches", "collect", "--no-progress", "--store", str(store)], env,
                                work / f"{name}-collect.log", tree)}
    finally:
        server.stop()
    return out


def stored(store: Path) -> dict[str, list[tuple]]:
    import duckdb

    with duckdb.connect(str(store), read_only=True) as db:
        return {table: sorted(db.execute(query).fetchall(), key=repr) for table, query in COMPARED.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--features", type=int, default=32768)
    parser.add_argument("--reference", default="6ceb242", help="the commit to compare with")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="batch-cpu-"))
    work.mkdir(parents=True, exist_ok=True)
    reference = export_tree(args.reference, work)
    stores = {"reference": work / "reference.duckdb", "this tree": work / "this.duckdb"}
    for path in stores.values():
        shutil.copy(args.store, path)
    print(f"uptime: {os.getloadavg()}", flush=True)
    results = {"reference": run_tree(reference, stores["reference"], args.features, work, "reference"),
               "this tree": run_tree(ROOT, stores["this tree"], args.features, work, "this")}
    print(f"uptime: {os.getloadavg()}", flush=True)
    rows = {name: stored(path) for name, path in stores.items()}
    fired = len(rows["this tree"]["explanations"])
    print(f"{args.features:,} features of {args.store}: {fired:,} explained (fired), reference {args.reference}")
    print(f"{'stage':<10}{'tree':<12}{'wall s':>9}{'cpu s':>9}{'cpu ms/feat':>13}")
    for stage in ("submit", "collect"):
        for name in results:
            wall, cpu = results[name][stage]
            print(f"{stage:<10}{name:<12}{wall:>9.1f}{cpu:>9.1f}{1000 * cpu / max(fired, 1):>13.3f}")
        ratio = results["reference"][stage][1] / max(results["this tree"][stage][1], 1e-9)
        print(f"{stage:<10}reference / this tree CPU: {ratio:.2f}x")
    same = True
    for table in COMPARED:
        equal = rows["reference"][table] == rows["this tree"][table]
        same &= equal
        print(f"{table}: {len(rows['this tree'][table]):,} rows, {'identical' if equal else 'DIFFERENT'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
