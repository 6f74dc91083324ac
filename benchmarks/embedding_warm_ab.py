"""The warm embedding scorer of this tree against a reference commit's, alternating passes in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_warm_ab.py STORE --reference COMMIT [--last 8192] [--passes 4]

"Warm" is the scorer's own work a feature once the model has nothing left to embed: its
explanation's vector stored by search, its windows' vectors cached (BENCHMARKS.md, "The
embedding scorer at a million features"). STORE is never written: the last ``--last`` fired
features get token-lookup labels on a working copy (benchmarks/labelled_copy.py), are scored
once cold (filling one text-vector cache shared by every later pass) and their labels'
vectors stored (``embed_missing``), all outside the timing.

Then ``score_features`` scores the slice again ``--passes`` times with this tree's code and as
often with the reference's, alternating (this VM's speed drifts over minutes, so only passes
side by side compare), the slice's scores deleted before each pass. The reference is the
code of the places the warm path runs per feature that this round changed, read from git at COMMIT and put in
place of this tree's for its passes: the scorer's bulk scoring
(``EmbeddingScorer._score_all``), the cache's ``TextVectors.lookup``, how the engine draws
its chunks of jobs (``paused_batches`` where COMMIT has it, else ``unpaused_batches`` with the
scorer's ``prepare_chunk`` paused where COMMIT's ``score_jobs`` paused it), how a
chunk finds the scores stored already (COMMIT's ``score_jobs._existing`` where it has one),
and when the writer commits (COMMIT's ``ResultWriter.due``). Everything else (reading
records, the engine, the inserts) is this tree's in both.

It prints each pass's features a second, the best and the median of each side, their ratio,
and whether both sides stored the same scores (it exits 1 if not).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import featurelens.llm.engine as engine_module
import featurelens.scorers.score_jobs as score_jobs_module
from featurelens.core.gc_pause import gc_paused
from featurelens.core.model.sentence_embedding import default_model_path, embed
from featurelens.core.model.text_vectors import TextVectors
from featurelens.core.store import explanation_search
from featurelens.llm.engine import EngineSettings
from featurelens.llm.writer import ResultWriter
from featurelens.scorers.embedding import EmbeddingScorer
from featurelens.scorers.score_jobs import ScoreSpec, score_features

from labelled_copy import labelled_copy  # benchmarks/, this script's own folder
from unpaused import unpaused_batches

ROOT = Path(__file__).resolve().parents[1]


def git_show(commit: str, path: str) -> str:
    """The text of ``path`` as of ``commit``."""
    return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def module_at(commit: str, path: str, name: str, folder: Path):
    """The module at ``path`` as of ``commit``, imported under ``name`` (its own imports
    resolve to this tree)."""
    file = folder / f"{name}.py"
    file.write_text(git_show(commit, path), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--reference", required=True, help="the commit to compare with")
    parser.add_argument("--last", type=int, default=8192)
    parser.add_argument("--passes", type=int, default=4, help="passes of each side, alternating")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    path = str(default_model_path())
    embed(["warm"], path)
    settings = EngineSettings(concurrency=64, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        old_scorer = module_at(args.reference, "featurelens/scorers/embedding.py", "reference_embedding",
                               Path(folder))
        old_vectors = module_at(args.reference, "featurelens/core/model/text_vectors.py",
                                "reference_text_vectors", Path(folder))
        old_jobs = module_at(args.reference, "featurelens/scorers/score_jobs.py", "reference_score_jobs",
                             Path(folder))
        old_writer = module_at(args.reference, "featurelens/llm/writer.py", "reference_writer", Path(folder))
    old_engine = git_show(args.reference, "featurelens/llm/engine.py")
    old_jobs_source = git_show(args.reference, "featurelens/scorers/score_jobs.py")
    stored_ids = score_jobs_module.stored_ids
    if hasattr(old_jobs, "_existing"):
        def old_stored_ids(store, table, column, ids, features, match=None):
            return old_jobs._existing(store, ids, features)
    else:
        old_stored_ids = stored_ids
    prepare = EmbeddingScorer.prepare_chunk
    drawn_paused = "paused_batches" in old_engine
    if not drawn_paused and "gc_paused" in old_jobs_source:
        def old_prepare(self, pairs):  # before the engine paused the draw, score_jobs paused this call
            with gc_paused():
                return prepare(self, pairs)
    else:
        old_prepare = prepare
    sides = {
        "this tree": (EmbeddingScorer._score_all, TextVectors.lookup, engine_module.paused_batches,
                      stored_ids, ResultWriter.due, prepare),
        "reference": (old_scorer.EmbeddingScorer._score_all, old_vectors.TextVectors.lookup,
                      engine_module.paused_batches if drawn_paused else unpaused_batches,
                      old_stored_ids, old_writer.ResultWriter.due, old_prepare),
    }
    shared = TextVectors(path, capacity=1 << 20)
    original_vectors = EmbeddingScorer.vectors
    EmbeddingScorer.vectors = lambda self: shared  # one cache: both sides find every vector
    rates: dict[str, list[float]] = {name: [] for name in sides}
    stored: dict[str, dict] = {}
    try:
        with labelled_copy(args.store, args.last) as (store, where, labels):
            spec = ScoreSpec("offline:none", "embedding", where=where, explainer="token-lookup")
            score_features(store, spec, settings=settings)
            explanation_search.embed_missing(store, show_progress=False)
            for _ in range(args.passes):
                for name, pieces in sides.items():
                    (EmbeddingScorer._score_all, TextVectors.lookup, engine_module.paused_batches,
                     score_jobs_module.stored_ids, ResultWriter.due, EmbeddingScorer.prepare_chunk) = pieces
                    store.execute(f"DELETE FROM scores WHERE scorer = 'embedding' AND {where}")
                    store.execute("CHECKPOINT")
                    started = time.perf_counter()
                    done = score_features(store, spec, settings=settings).succeeded
                    rates[name].append(done / (time.perf_counter() - started))
                    stored[name] = dict(((f, e), s) for f, e, s in store.execute(
                        f"SELECT feature, explanation_id, score FROM scores WHERE scorer = 'embedding' AND {where}"))
                    print(f"{name}: {rates[name][-1]:,.0f} features/s", flush=True)
    finally:
        (EmbeddingScorer._score_all, TextVectors.lookup, engine_module.paused_batches,
         score_jobs_module.stored_ids, ResultWriter.due, EmbeddingScorer.prepare_chunk) = sides["this tree"]
        EmbeddingScorer.vectors = original_vectors
    same = stored["this tree"] == stored["reference"]
    print(f"slice: the last {len(labels):,} fired features; reference {args.reference}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for name, values in rates.items():
        print(f"{name}: best {max(values):,.0f}, median {statistics.median(values):,.0f} features/s")
    print(f"this tree / reference: best {max(rates['this tree']) / max(rates['reference']):.2f}x, median "
          f"{statistics.median(rates['this tree']) / statistics.median(rates['reference']):.2f}x")
    print(f"scores identical: {same} ({len(stored['this tree']):,} features)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
