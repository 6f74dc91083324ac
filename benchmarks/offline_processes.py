"""The offline labeling stages in one process against worker processes, alternating passes.

Run: PYTHONPATH=. .venv/bin/python benchmarks/offline_processes.py STORE [--last 65536] [--processes N] [--passes 3]

Over the last ``--last`` fired features of STORE (a working copy: benchmarks/labelled_copy.py),
each pass runs token-lookup labels (``explain``) then token-check scores of them, either in
this process (``processes=1``) or with ``--processes`` offline workers
(featurelens/llm/offline_pool: this process reads the pages and writes the rows, the workers
build the records and label them). The two sides alternate pass by pass (this VM's speed
drifts over minutes, so only passes side by side compare); a pass deletes the slice's rows of
its stage first, outside the timing, and its timing includes starting the workers, as a
command pays it. A first untimed run of each stage pays the imports and the first reads.

It prints each pass's features a second, each side's median a stage and their ratio, the
CPU this process spends a feature with workers (the bound a store's one writer sets however
many workers there are), the workers' start time and peak memory, and whether both sides
stored the same rows (it exits 1 if not).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # labelled_copy, beside this script


def run_stage(store, stage: str, where: str, processes: int) -> tuple[float, str]:
    """Delete the slice's rows of ``stage``, run it once timed: (features a second, rows' digest)."""
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import ScoreSpec, score_features

    settings = EngineSettings(concurrency=64, progress=False, processes=processes)
    if stage == "token-lookup":
        store.execute(f"DELETE FROM explanations WHERE explainer = 'token-lookup' AND {where}")
    else:
        store.execute(f"DELETE FROM scores WHERE scorer = 'token-check' AND {where}")
    store.execute("DELETE FROM failures")
    store.execute("CHECKPOINT")
    started, cpu = time.perf_counter(), time.process_time()
    if stage == "token-lookup":
        stats = explain_features(store, ExplainSpec("offline:none", "token-lookup", where=where), settings=settings)
        rows = store.execute(f"SELECT feature, explanation_id, text, options FROM explanations "
                             f"WHERE explainer = 'token-lookup' AND {where} ORDER BY ALL")
    else:
        stats = score_features(store, ScoreSpec("offline:none", "token-check", where=where, explainer="token-lookup"),
                               settings=settings)
        rows = store.execute(f"SELECT feature, score_id, score, metrics, details FROM scores "
                             f"WHERE scorer = 'token-check' AND {where} ORDER BY ALL")
    elapsed = time.perf_counter() - started
    CPU[(stage, processes)] = CPU.get((stage, processes), []) + [(time.process_time() - cpu) / (stats.succeeded + stats.failed)]
    failures = store.execute("SELECT stage, feature, method, reason FROM failures ORDER BY ALL")
    digest = hashlib.sha256(repr((rows, failures)).encode()).hexdigest()[:16]
    return (stats.succeeded + stats.failed) / elapsed, digest


#: This process's CPU seconds a feature, per (stage, processes), pass by pass.
CPU: dict[tuple[str, int], list[float]] = {}
#: The workers' peak resident memory (VmHWM, MB), read as each pool closes.
WORKER_PEAK_MB: list[float] = []


def watch_workers() -> None:
    """Record each worker's peak resident memory before its pool ends it."""
    from featurelens.llm.offline_pool import OfflinePool

    close = OfflinePool.close

    def closing(self) -> None:
        for process, _ in self.workers:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                WORKER_PEAK_MB.append(int(status.split("VmHWM:")[1].split()[0]) / 1024)
            except (OSError, IndexError, ValueError):
                pass
        close(self)

    OfflinePool.close = closing


def start_time(processes: int) -> float:
    """Seconds to start ``processes`` token-check workers and hear each say it is ready."""
    from featurelens.llm.offline_pool import OfflinePool
    from featurelens.scorers.score_jobs import ScoreSpec, ScoreStage

    started = time.perf_counter()
    with OfflinePool(ScoreStage.pages, ScoreSpec("offline:none", "token-check").config(), None, (), processes):
        ready = time.perf_counter() - started
    return ready


def main() -> int:
    from labelled_copy import labelled_copy

    from featurelens.llm.offline_pool import cores

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--last", type=int, default=65_536)
    parser.add_argument("--processes", type=int, default=cores())
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    watch_workers()
    rates: dict[tuple[str, int], list[float]] = {}
    digests: dict[tuple[str, int], set[str]] = {}
    with labelled_copy(args.store, args.last) as (store, where, labels):
        print(f"slice: {where}, {len(labels):,} labelled features; cores {cores()}; "
              f"workers {args.processes}", flush=True)
        for stage in ("token-lookup", "token-check"):  # imports and first reads, untimed
            run_stage(store, stage, where, 1)
        for n in range(args.passes):
            sides = (1, args.processes) if n % 2 == 0 else (args.processes, 1)
            for stage in ("token-lookup", "token-check"):
                for processes in sides:
                    rate, digest = run_stage(store, stage, where, processes)
                    rates.setdefault((stage, processes), []).append(rate)
                    digests.setdefault((stage, processes), set()).add(digest)
                    print(f"pass {n + 1}: {stage:12} processes {processes}: {rate:,.0f} features/s", flush=True)
    print(f"workers' start ({args.processes}, token-check): {start_time(args.processes):.2f} s")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    same = True
    for stage in ("token-lookup", "token-check"):
        one = statistics.median(rates[(stage, 1)])
        many = statistics.median(rates[(stage, args.processes)])
        equal = digests[(stage, 1)] == digests[(stage, args.processes)] and len(digests[(stage, 1)]) == 1
        same &= equal
        print(f"{stage}: median {one:,.0f} features/s in one process, {many:,.0f} with {args.processes} "
              f"workers = {many / one:.2f}x; rows {'identical' if equal else 'DIFFER'}")
        writer = statistics.median(CPU[(stage, args.processes)])
        print(f"  the writing process's own CPU with workers: {writer * 1e6:.0f} us a feature "
              f"(alone: {statistics.median(CPU[(stage, 1)]) * 1e6:.0f}), so however many workers, "
              f"at most {1 / writer:,.0f} features/s a store")
    if WORKER_PEAK_MB:
        print(f"workers' peak resident memory: {max(WORKER_PEAK_MB):,.0f} MB at most, one each")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
