"""What a browser watching a labeling job costs the job.

`featurelens serve` and `featurelens explain` take turns on the store file (see
featurelens/core/store/turns.py): the job gives the file away after a flush when the
browser has asked, and takes it back after the page. In one run this script times the
same `featurelens explain` (a subprocess, against the loopback OpenAI-compatible stub
at a fixed latency) on a fresh copy of the same store

1. with nobody reading the store,
2. while a browser (`make_server` in this process) is asked for a feature page every
   1 s, and then every 0.25 s (a reader far more eager than a person),
3. with the same browser load on another copy of the store (no turns to take: what the
   browser's CPU alone costs the job on a shared machine),

each configuration --repeats times, interleaved, and prints the median wall time of
each, its ratio to the job alone, and the pages' median and
worst latency.

    .venv/bin/python benchmarks/serve_alongside_job.py [--features 2000] [--latency 0.05] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from labeling import build_store, start_stub  # noqa: E402


def run_job(store: Path, base_url: str, concurrency: int, every: float | None,
            browse_store: Path | None = None) -> tuple[float, list[float]]:
    """Wall seconds of `featurelens explain` on ``store``; page latencies if a browser reads
    (``browse_store``, default ``store``: another copy measures the browser's CPU alone)."""
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "", "FEATURELENS_LOAD_PLUGINS": ""}
    command = [sys.executable, "-m", "featurelens.cli", "explain", "--llm", "openai:stub",
               "--concurrency", str(concurrency), "--no-progress", "--store", str(store)]
    latencies: list[float] = []
    server = None
    if every is not None:
        from featurelens.browser.server import make_server, start_in_thread, url_of

        server = make_server(browse_store or store, port=0)
        start_in_thread(server)
        page = url_of(server) + "feature/bench/7"
        urllib.request.urlopen(page, timeout=60).read()
    stop = threading.Event()

    def browse() -> None:
        while not stop.wait(every):
            started = time.perf_counter()
            urllib.request.urlopen(page, timeout=120).read()
            latencies.append(time.perf_counter() - started)

    reader = threading.Thread(target=browse, daemon=True) if every is not None else None
    started = time.perf_counter()
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if reader is not None:
        reader.start()
    out, err = job.communicate()
    wall = time.perf_counter() - started
    stop.set()
    if reader is not None:
        reader.join()
    if server is not None:
        server.shutdown()
        server.browser_data.close()  # type: ignore[attr-defined]
        server.server_close()
    if job.returncode != 0:
        raise SystemExit(f"explain failed: {err.strip()}")
    return wall, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fl-serve-job-"))
    template = folder / "template.duckdb"
    build_store(str(template), args.features)
    stub, base_url = start_stub(args.latency)
    try:
        print(f"featurelens explain, {args.features} features, stub latency {args.latency} s, "
              f"concurrency {args.concurrency}")
        # "other copy": the same browser load on a different file, so no turn-taking: what
        # the browser's CPU costs the job on a shared machine, apart from sharing the file
        configs = (("alone", None, False), ("page every 1 s", 1.0, False),
                   ("page every 1 s, other copy", 1.0, True), ("page every 0.25 s", 0.25, False),
                   ("page every 0.25 s, other copy", 0.25, True))
        walls: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        pages: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        for repeat in range(args.repeats):  # interleaved, so a change in machine load hits all three
            for label, every, other in configs:
                store = folder / f"{repeat}-{label.replace(' ', '-').replace(',', '')}.duckdb"
                shutil.copy(template, store)
                wall, latencies = run_job(store, base_url, args.concurrency, every,
                                          browse_store=template if other else None)
                walls[label].append(wall)
                pages[label] += latencies
                store.unlink()
        for label, _, _ in configs:
            shown = (f"; {len(pages[label])} pages, median {1000 * statistics.median(pages[label]):.0f} ms, "
                     f"worst {1000 * max(pages[label]):.0f} ms") if pages[label] else ""
            times = ", ".join(f"{w:.2f}" for w in walls[label])
            print(f"  {label:<30}: job median {statistics.median(walls[label]):6.2f} s ({times}){shown}")
        alone = statistics.median(walls["alone"])
        for label in ("page every 1 s", "page every 0.25 s"):
            shared, other = statistics.median(walls[label]), statistics.median(walls[f"{label}, other copy"])
            print(f"  ratio median job time {label} / alone = {shared / alone:.3f}; "
                  f"/ same browser on another copy = {shared / other:.3f}")
    finally:
        stub.kill()
        stub.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
