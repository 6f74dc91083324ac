"""Per-feature stages on a million-feature store: the cost at the start of the dictionary
against the cost at its end, measured in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/million_stages.py [--store PATH] [--features 1048576]
     [--slice 4096] [--exports-only] [--processes N] [--formats neuronpedia,html] [--no-embedding]

Without ``--store`` a store is built in bulk by DuckDB (tests/wide_store.py). A copy of
the store is worked on (explain and score write to it). For two slices of ``--slice``
features, the first ones and the last ones of the dictionary, it times in this process:

- reading records (``stream_records``, the windows token-lookup reads, then the ones
  token-check reads);
- ``explain`` with token-lookup (through the engine, writes included);
- ``score`` with token-check over those labels;
- ``score`` with the embedding scorer (sentence model on the CPU, loaded before the
  timing) over the first ``--embed-slice`` features of the slice, and the search-by-meaning
  fill of the slice's new explanations (``explanation_search.embed_missing``);
- the whole command, ``featurelens label --explainer token-lookup --scorer token-check``,
  in a child process (its wall time and its CPU time, DuckDB's threads included);
- ``export --format neuronpedia`` and ``--format html`` of the slice (``--processes N``:
  that many worker processes, their start included; by default the export's own choice,
  which for a slice under ``featurelens.export.workers.MIN_FEATURES`` is this process;
  ``--no-export`` leaves them out).

Before the slices, every timed stage runs once on 64 features from the middle of the
dictionary (rows dropped after), so the start slice does not pay the process's one-off
costs (imports, plugin discovery) that the end slice would not.

``--exports-only`` times the exports alone (``--formats``: which of them). Peak RSS is this process's and, separately,
that of its largest worker process (``RUSAGE_CHILDREN``).

It prints features a second by wall time and by CPU time, this process's plus its worker
processes' (the machine is
shared: CPU time moves less with the load of others), and the end / start ratio of the
CPU cost per feature: near 1 means the stage reads the store by range and stays flat as
the dictionary grows; a stage that scans the whole store per chunk would show ~250.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from wide_store import wide_store  # noqa: E402

import featurelens  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def timed(call) -> tuple[float, float, object]:
    cpu, wall = _cpu(), time.perf_counter()
    result = call()
    return time.perf_counter() - wall, _cpu() - cpu, result


def label_command(store_path: Path, where: str) -> tuple[float, float, int]:
    """``featurelens label`` with token-lookup and token-check over ``where`` in a child
    process: its wall time, its CPU time and the features it explained."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "featurelens", "label", "--explainer", "token-lookup", "--scorer",
         "token-check", "--llm", "offline:none", "--where", where, "--no-progress", "--store",
         str(store_path)], capture_output=True, text=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"featurelens label exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with featurelens.open_store(store_path) as store:
        explained = store.execute(f"SELECT count(*) FROM explanations WHERE explainer = 'token-lookup' "
                                  f"AND feature IN (SELECT feature FROM features WHERE {where})")[0][0]
    print(f"label command: {explained:,} explained; peak RSS of the child {after.ru_maxrss / 1024:,.0f} MB "
          f"(the largest child so far); {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ''}")
    return wall, cpu, explained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--features", type=int, default=1 << 20)
    parser.add_argument("--slice", type=int, default=4096)
    parser.add_argument("--exports-only", action="store_true")
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--formats", default="neuronpedia,html")
    parser.add_argument("--embed-slice", type=int, default=512,
                        help="features the embedding scorer scores per slice (a sentence model on the CPU)")
    parser.add_argument("--no-export", action="store_true", help="leave the exports out")
    parser.add_argument("--no-embedding", action="store_true",
                        help="leave out the stages that run the sentence model (embedding scorer, search fill)")
    args = parser.parse_args()
    options = {} if args.processes is None else {"processes": args.processes}

    from featurelens.core.host import protocols
    from featurelens.core.model.sentence_embedding import default_model_path, embed
    from featurelens.core.selection import Selection, stream_records
    from featurelens.core.store import explanation_search
    from featurelens.export.runner import export
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import ScoreSpec, score_features
    from featurelens.scorers.token_check import TokenCheckScorer

    with tempfile.TemporaryDirectory() as folder:
        store_path = Path(folder) / "wide.duckdb"
        if args.store is None:
            wall, cpu, _ = timed(lambda: wide_store(store_path, n_features=args.features))
            print(f"built {args.features:,} features in bulk: {wall:.0f} s wall, {cpu:.0f} s CPU")
        else:
            shutil.copy(args.store, store_path)
        with featurelens.open_store(store_path) as store:
            width = store.execute("SELECT max(feature) + 1 FROM features")[0][0]
            # an extracted or benchmarked store may hold these labels already: measure the work
            store.execute("DELETE FROM scores WHERE scorer IN ('token-check', 'embedding')")
            store.execute("DELETE FROM explanation_embeddings")
            store.execute("DELETE FROM explanations WHERE explainer = 'token-lookup'")
        slices = {"start": f"feature < {args.slice}", "end": f"feature >= {width - args.slice}"}
        print(f"{width:,} features; slices of {args.slice:,}: {slices}")
        settings = EngineSettings(concurrency=64, progress=False)
        rows: dict[str, dict[str, tuple[float, float, int]]] = {}
        # Each stage's first run in this process pays its one-off costs (imports, plugin
        # discovery, DuckDB's first plans: about 0.6 s of CPU for explain); they are paid
        # once per job, not per feature, so they are paid here on a few middle features
        # (whose rows are then dropped) and the start slice is timed like the end slice.
        warm = f"feature >= {width // 2} AND feature < {width // 2 + 64}"
        if not args.exports_only:
            with featurelens.open_store(store_path) as store:
                explain_features(store, ExplainSpec("offline:none", "token-lookup", where=warm), settings=settings)
                score_features(store, ScoreSpec("offline:none", "token-check", where=warm, explainer="token-lookup"),
                               settings=settings)
                store.execute(f"DELETE FROM scores WHERE scorer = 'token-check' AND {warm}")
                store.execute(f"DELETE FROM explanations WHERE explainer = 'token-lookup' AND {warm}")
        for fmt in () if args.no_export else args.formats.split(","):
            export(store_path, fmt, Path(folder) / f"{fmt}-warm", where=warm, **options)
            shutil.rmtree(Path(folder) / f"{fmt}-warm", ignore_errors=True)
        for name, where in slices.items():
            out: dict[str, tuple[float, float, int]] = {}
            if not args.exports_only:
                check = TokenCheckScorer()
                # the same script measures a tree from before example_fallbacks (before/after runs)
                fallbacks_of = getattr(protocols, "example_fallbacks", lambda component: None)
                with featurelens.open_store(store_path) as store:
                    for kinds_name, kinds, fallbacks in (
                            ("read records (lookup)", {"top": 10}, None),
                            ("read records (check)", protocols.example_kinds(check), fallbacks_of(check))):
                        wall, cpu, n = timed(lambda: sum(len(c) for c in stream_records(
                            store, Selection(where=f"({where}) AND fire_count > 0"), 2048, kinds,
                            *([fallbacks] if fallbacks else []))))
                        out[kinds_name] = (wall, cpu, n)
                    wall, cpu, stats = timed(lambda: explain_features(
                        store, ExplainSpec("offline:none", "token-lookup", where=where), settings=settings))
                    out["explain token-lookup"] = (wall, cpu, stats.succeeded)
                    wall, cpu, stats = timed(lambda: score_features(
                        store, ScoreSpec("offline:none", "token-check", where=where, explainer="token-lookup"),
                        settings=settings))
                    out["score token-check"] = (wall, cpu, stats.succeeded)
                    if not args.no_embedding:
                        embed_where = f"({where}) AND feature IN (SELECT feature FROM features WHERE {where} " \
                                      f"AND fire_count > 0 ORDER BY feature LIMIT {args.embed_slice})"
                        embed(["warm"], str(default_model_path()))  # loaded once, outside the timing
                        wall, cpu, stats = timed(lambda: score_features(
                            store, ScoreSpec("offline:none", "embedding", where=embed_where,
                                             explainer="token-lookup"), settings=settings))
                        out["score embedding"] = (wall, cpu, stats.succeeded)
                        wall, cpu, n = timed(lambda: explanation_search.embed_missing(store, show_progress=False))
                        out["embed explanations"] = (wall, cpu, n)
                    store.execute(f"DELETE FROM scores WHERE scorer IN ('token-check', 'embedding') AND {where}")
                    store.execute(f"DELETE FROM explanations WHERE explainer = 'token-lookup' AND {where}")
                out["label command"] = label_command(store_path, where)
            for fmt in () if args.no_export else args.formats.split(","):
                target = Path(folder) / f"{fmt}-{name}"
                wall, cpu, _ = timed(lambda: export(store_path, fmt, target, where=where, **options))
                out[f"export {fmt}"] = (wall, cpu, args.slice)
                shutil.rmtree(target, ignore_errors=True)
            rows[name] = out
        print(f"{'stage':<24} {'start feat/s (wall / CPU)':>28} {'end feat/s (wall / CPU)':>26} "
              f"{'end/start CPU per feature':>26}")
        print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        for stage in rows["start"]:
            (w0, c0, n0), (w1, c1, n1) = rows["start"][stage], rows["end"][stage]
            ratio = (c1 / max(n1, 1)) / max(c0 / max(n0, 1), 1e-9)
            print(f"{stage:<24} {n0 / w0:>12,.0f} / {n0 / max(c0, 1e-9):>10,.0f} "
                  f"{n1 / w1:>12,.0f} / {n1 / max(c1, 1e-9):>10,.0f} {ratio:>20.2f}")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB; largest worker "
              f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
