"""The main job over a 1,048,576-feature dictionary on this machine, stage by stage.

Run: PYTHONPATH=. .venv/bin/python benchmarks/million.py [--features 1048576] [--store PATH]
     [--llm-features N] [--keep]

Stages (each one a ``featurelens`` command in its own process, as a user runs them):

1. ``store``: without ``--store``, a store as wide as the dictionary written in bulk by
   DuckDB (tests/wide_store.py: 32-token windows, 10 top, 5 quantile and 5 random
   windows a fired feature, one feature in ten never fired). With ``--store PATH`` (an
   extracted store) the stage is skipped and PATH is copied.
2. ``label offline``: ``label --explainer token-lookup --scorer token-check`` over every
   feature (the dead ones are skipped and named).
3. ``explain --batch-api``: token-activations prompts for ``--llm-features`` fired
   features (all by default) submitted to a stub OpenAI Batch server on loopback
   (tests/batch_server.py, kept lean: it keeps request ids, not bodies), split into
   files of at most 50,000 requests / 190 MiB.
4. ``batches status`` and 5. ``batches collect``: progress per batch, then download,
   cache and write every answer as an explanation.
6. ``score``: token-check over the LLM's explanations.
7. ``export neuronpedia``.
8. ``serve``: the dictionary's list page and overview page, fetched 5 times each.

For every stage it prints wall time, the stage process's peak RSS (``/usr/bin/time``), features
a second and the store's size after it. Figures depend on the machine's load: the
machine is shared, so say what else ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from batch_server import BatchServer  # noqa: E402

DICTIONARY = "wide"


class LeanBatchServer(BatchServer):
    """The stub batch server, holding each uploaded request's id only (a million
    prompts would otherwise sit in its memory); every answer is the same explanation."""

    def _route(self, h, method):  # type: ignore[no-untyped-def]
        super()._route(h, method)
        with self.lock:
            for file_id, lines in self.files.items():
                if lines and lines[0].get("body") is not None:
                    self.files[file_id] = [{"custom_id": line["custom_id"], "body": None} for line in lines]


@dataclass
class Stage:
    name: str
    wall_s: float
    peak_rss_mb: float
    features: int
    store_mb: float
    note: str = ""

    def line(self) -> str:
        rate = f"{self.features / self.wall_s:,.0f}" if self.features and self.wall_s > 0 else "-"
        return (f"{self.name:<26} {self.wall_s:>9.1f} s {self.peak_rss_mb:>9,.0f} MB "
                f"{rate:>12} feat/s {self.store_mb:>9,.0f} MB  {self.note}")


def run(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run one command; (wall seconds, peak RSS in MB, its output). Fails loudly.

    The peak comes from ``/usr/bin/time`` (a small parent): Linux carries a parent's peak
    RSS into a forked child's ``ru_maxrss``, and this process holds the stub server."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M", *args], stdout=out,
                                 stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    text = log.read_text()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {process.returncode}:\n{text[-3000:]}")
    lines = text.splitlines()
    peak = [line for line in lines if line.startswith("MAXRSS_KB ")]
    text = "\n".join(line for line in lines if not line.startswith("MAXRSS_KB "))
    return wall, int(peak[-1].split()[1]) / 1024 if peak else 0.0, text


def fl(*args: str) -> list[str]:
    return [sys.executable, "-m", "featurelens", *args]


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1 << 20)
    parser.add_argument("--store", type=Path, default=None, help="an extracted store to start from")
    parser.add_argument("--llm-features", type=int, default=None, help="fired features sent to the LLM (default all)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="million-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "million.duckdb"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "FEATURELENS_LOAD_PLUGINS": ""}
    stages: list[Stage] = []
    total_started = time.perf_counter()
    n = args.features

    def record(name: str, wall: float, rss: float, features: int, note: str = "") -> None:
        stage = Stage(name, wall, rss, features, size_mb(store), note)
        stages.append(stage)
        print(stage.line(), flush=True)

    print(f"{'stage':<26} {'wall':>11} {'peak RSS':>12} {'rate':>19} {'store':>12}", flush=True)
    if args.store is None:
        code = (f"from wide_store import wide_store; from pathlib import Path; "
                f"wide_store(Path({str(store)!r}), n_features={n})")
        wall, rss, _ = run([sys.executable, "-c", code], env, work / "store.log")
        record("store (bulk, synthetic)", wall, rss, n)
    else:
        shutil.copy(args.store, store)
        record("store (copied)", 0.0, 0.0, 0, str(args.store))
    import duckdb

    with duckdb.connect(str(store), read_only=True) as db:
        dictionary, fired, dead = db.execute(
            "SELECT any_value(dictionary_id), count(*) FILTER (WHERE fire_count > 0), "
            "count(*) FILTER (WHERE fire_count = 0) FROM features").fetchone()
    print(f"  {fired + dead:,} features: {fired:,} fired, {dead:,} never fired", flush=True)

    wall, rss, text = run(fl("label", "--explainer", "token-lookup", "--scorer", "token-check",
                             "--no-progress", "--store", str(store)), env, work / "label.log")
    record("label offline (lookup+check)", wall, rss, fired, _first(text, "never fired"))

    server = LeanBatchServer()
    llm_env = {**env, **server.env()}
    llm_where = ["--limit", str(args.llm_features)] if args.llm_features else []
    try:
        wall, rss, text = run(fl("explain", "--llm", "openai:gpt-4o-mini", "--explainer", "token-activations", "--option", "features_per_request=1",
                                 "--batch-api", "--no-progress", *llm_where, "--store", str(store)),
                              llm_env, work / "submit.log")
        submitted = _count(text, "submitted ", " requests")
        record("explain --batch-api submit", wall, rss, submitted,
               f"{len(server.batches)} batches")
        wall, rss, text = run(fl("batches", "status", "--store", str(store)), llm_env, work / "status.log")
        record("batches status", wall, rss, 0, text.strip().splitlines()[-1] if text.strip() else "")
        wall, rss, text = run(fl("batches", "collect", "--no-progress", "--store", str(store)),
                              llm_env, work / "collect.log")
        record("batches collect", wall, rss, submitted, _first(text, "wrote"))
    finally:
        server.stop()

    wall, rss, text = run(fl("score", "--scorer", "token-check", "--explained-by",
                             "openai:gpt-4o-mini", "--no-progress", "--store", str(store)),
                          env, work / "score.log")
    record("score token-check (LLM labels)", wall, rss, submitted)

    wall, rss, text = run(fl("export", "--format", "neuronpedia", "-o", str(work / "neuronpedia"),
                             "--store", str(store)), env, work / "export.log")
    record("export neuronpedia", wall, rss, fired + dead, text.strip().splitlines()[-1][:80])

    port = free_port()
    serve = subprocess.Popen(fl("serve", "--port", str(port), "--store", str(store)), env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for name, path in (("serve list page", f"/dictionary/{dictionary}"),
                           ("serve overview page", f"/dictionary/{dictionary}/overview")):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                urllib.request.urlopen(base + path, timeout=300).read()
                times.append(time.perf_counter() - started)
            times.sort()
            record(name, times[len(times) // 2], 0.0, 0, f"median of 5; first {times[0] * 1000:.0f}-"
                                                          f"{times[-1] * 1000:.0f} ms")
    finally:
        serve.terminate()
        serve.wait()
    total = time.perf_counter() - total_started
    print(f"total wall {total:,.0f} s; highest stage peak RSS "
          f"{max(s.peak_rss_mb for s in stages):,.0f} MB; store {size_mb(store):,.0f} MB", flush=True)
    (work / "million.json").write_text(json.dumps([s.__dict__ for s in stages], indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")


def _first(text: str, needle: str) -> str:
    return next((line.strip()[:100] for line in text.splitlines() if needle in line), "")


def _count(text: str, before: str, after: str) -> int:
    for line in text.splitlines():
        if before in line and after in line:
            return int(line.split(before, 1)[1].split(after, 1)[0].replace(",", ""))
    return 0


if __name__ == "__main__":
    main()
