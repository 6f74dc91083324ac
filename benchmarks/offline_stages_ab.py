"""The offline per-feature stages of this tree against a reference commit's, whole code, alternating passes.

Run: PYTHONPATH=. .venv/bin/python benchmarks/offline_stages_ab.py STORE --reference COMMIT [--last 8192] [--passes 4]

Three stages run over the last ``--last`` fired features of STORE (never written: a working
copy is made, benchmarks/labelled_copy.py): token-lookup labels (``explain``), token-check
scores and warm embedding scores (the label's vector stored by search, every window's
vector at hand: the scorer's own work, BENCHMARKS.md "The embedding scorer at a million
features"). The cold embedding score and the search fill run once, outside any timing; the
window and label vectors they made are saved and handed to every embedding pass.

Each pass is its own process with one tree's ``featurelens`` first on ``sys.path``: this
tree, or COMMIT checked out in a temporary worktree, so the comparison covers whatever the
two commits changed (the engine, the job sources, the scorer, the writer) with nothing
swapped by hand. The two sides alternate pass by pass (this VM's speed drifts over
minutes, so only passes side by side compare). A pass runs its stage twice over the
slice and times the second run: the first pays what a command pays once (imports on first
use, the corpus's token strings, DuckDB's first reads), which a million features amortise
and a slice of thousands does not. Before each run the slice's rows of that stage are
deleted, outside the timing.

It prints each pass's features a second, each side's best and median a stage, their
ratio, and whether both sides stored the same rows (it exits 1 if not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("token-lookup", "token-check", "embedding")


def one_pass(stage: str, store_path: Path, where: str, vectors: Path) -> None:
    """Delete the slice's rows of ``stage``, run it once timed, print its rate and rows' digest."""
    import featurelens
    from featurelens.llm.engine import EngineSettings

    settings = EngineSettings(concurrency=64, progress=False)
    if stage == "embedding":
        import numpy as np
        import torch

        from featurelens.core.model.sentence_embedding import default_model_path, embed
        from featurelens.core.model.text_vectors import TextVectors
        from featurelens.scorers.embedding import EmbeddingScorer

        torch.set_num_threads(os.cpu_count() or 1)
        shared = TextVectors(str(default_model_path()), capacity=1 << 20)
        shared.remember(json.loads(vectors.with_suffix(".json").read_text(encoding="utf-8")), np.load(vectors))
        EmbeddingScorer.vectors = lambda self: shared
        embed(["warm"], str(default_model_path()))  # the model's load outside the timing
    with featurelens.open_store(store_path) as store:
        for _ in range(2):  # the second run is timed (module doc)
            if stage == "token-lookup":
                from featurelens.labelers.explain import ExplainSpec, explain_features

                store.execute(f"DELETE FROM explanations WHERE explainer = 'token-lookup' AND {where}")
                store.execute("CHECKPOINT")
                started = time.perf_counter()
                done = explain_features(store, ExplainSpec("offline:none", "token-lookup", where=where),
                                        settings=settings).succeeded
                elapsed = time.perf_counter() - started
                rows = store.execute(f"SELECT feature, explanation_id, text FROM explanations "
                                     f"WHERE explainer = 'token-lookup' AND {where} ORDER BY ALL")
            else:
                from featurelens.scorers.score_jobs import ScoreSpec, score_features

                store.execute(f"DELETE FROM scores WHERE scorer = '{stage}' AND {where}")
                store.execute("CHECKPOINT")
                started = time.perf_counter()
                done = score_features(store, ScoreSpec("offline:none", stage, where=where,
                                                       explainer="token-lookup"), settings=settings).succeeded
                elapsed = time.perf_counter() - started
                rows = store.execute(f"SELECT feature, explanation_id, score, status, CAST(metrics AS VARCHAR), "
                                     f"CAST(details AS VARCHAR) FROM scores WHERE scorer = '{stage}' AND {where} "
                                     f"ORDER BY ALL")
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    print(json.dumps({"rate": done / elapsed, "rows": len(rows), "digest": digest}))


def prepare(source: Path, last: int, work: Path, vectors: Path, embedding: bool = True) -> tuple[str, int]:
    """The working copy with the slice labelled, its labels' vectors stored and the slice
    scored once cold; every vector the cold score used saved to ``vectors`` (its texts beside it)."""
    import numpy as np

    from featurelens.core.model.sentence_embedding import default_model_path
    from featurelens.core.model.text_vectors import TextVectors
    from featurelens.core.store import explanation_search
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.embedding import EmbeddingScorer
    from featurelens.scorers.score_jobs import ScoreSpec, score_features

    from labelled_copy import labelled_copy  # benchmarks/, this script's own folder

    seen: dict[str, np.ndarray] = {}
    cache = TextVectors(str(default_model_path()), capacity=1 << 20)
    lookup = cache.lookup

    def recording(texts):
        found, index = lookup(texts)
        for text, row in zip(texts, index.tolist()):
            if text not in seen:
                seen[text] = found[row].copy()
        return found, index

    cache.lookup = recording
    original = EmbeddingScorer.vectors
    EmbeddingScorer.vectors = lambda self: cache
    try:
        with labelled_copy(source, last, keep=work) as (store, where, labels):
            if embedding:
                explanation_search.embed_missing(store, show_progress=False)  # labels: embedded once
                score_features(store, ScoreSpec("offline:none", "embedding", where=where, explainer="token-lookup"),
                               settings=EngineSettings(concurrency=64, progress=False))
    finally:
        EmbeddingScorer.vectors = original
    texts = list(seen)
    vectors.with_suffix(".json").write_text(json.dumps(texts), encoding="utf-8")
    np.save(vectors, np.stack([seen[t] for t in texts]) if texts else np.empty((0, 0), dtype=np.float32))
    return where, len(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, nargs="?")
    parser.add_argument("--reference", help="the commit to compare with")
    parser.add_argument("--last", type=int, default=8192)
    parser.add_argument("--passes", type=int, default=4, help="passes of each side a stage, alternating")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--pass", dest="one", nargs=4, metavar=("STAGE", "WORK", "WHERE", "VECTORS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        stage, work, where, vectors = args.one
        one_pass(stage, Path(work), where, Path(vectors))
        return 0
    if args.store is None or not args.reference:
        parser.error("give STORE and --reference COMMIT")
    stages = [s for s in args.stages.split(",") if s]
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference"
        subprocess.run(["git", "worktree", "add", "--detach", str(reference), args.reference], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            work, vectors = Path(folder) / "work.duckdb", Path(folder) / "vectors.npy"
            where, n = prepare(args.store, args.last, work, vectors, "embedding" in stages)
            trees = {"this tree": ROOT, "reference": reference}
            rates = {(stage, name): [] for stage in stages for name in trees}
            digests: dict[tuple[str, str], set[str]] = {key: set() for key in rates}
            for _ in range(args.passes):
                for stage in stages:
                    for name, tree in trees.items():
                        out = subprocess.run(
                            [sys.executable, __file__, "--pass", stage, str(work), where, str(vectors)],
                            env={**os.environ, "PYTHONPATH": str(tree)}, check=True, capture_output=True,
                            text=True).stdout
                        result = json.loads(out.strip().splitlines()[-1])
                        rates[(stage, name)].append(result["rate"])
                        digests[(stage, name)].add(f"{result['rows']}:{result['digest']}")
                        print(f"{stage} {name}: {result['rate']:,.0f} features/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=ROOT, check=False,
                           capture_output=True)
    print(f"slice: the last {n:,} fired features; reference {args.reference}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    same = True
    for stage in stages:
        mine, theirs = rates[(stage, "this tree")], rates[(stage, "reference")]
        identical = len(digests[(stage, "this tree")] | digests[(stage, "reference")]) == 1
        same = same and identical
        print(f"{stage}: this tree best {max(mine):,.0f}, median {statistics.median(mine):,.0f}; reference best "
              f"{max(theirs):,.0f}, median {statistics.median(theirs):,.0f} features/s; median ratio "
              f"{statistics.median(mine) / statistics.median(theirs):.2f}x; rows identical: {identical}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
