"""The embedding scorer's stage on the last features of a wide store, the model loaded first.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_scorer.py STORE N

On STORE (written to: work on a copy), the last N features of the dictionary get
token-lookup labels if they have none, then ``score_features`` with the ``embedding``
scorer runs over them. The sentence model is loaded before the timing starts, so the
figure is the per-feature cost (test windows, embeddings, AUROC, writes), not the load.
It prints features a second by this process's CPU time and by wall time, the mean score
and the peak RSS. Run it with ``PYTHONPATH`` pointing at two trees, one after the other or
side by side on two copies, to compare them.
"""

from __future__ import annotations

import resource
import sys
import time

import featurelens
from featurelens.core.model.sentence_embedding import default_model_path, embed
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.llm.engine import EngineSettings
from featurelens.scorers.score_jobs import ScoreSpec, score_features


def main() -> None:
    path, n = sys.argv[1], int(sys.argv[2])
    embed(["warm"], str(default_model_path()))  # the model loaded once, outside the timing
    with featurelens.open_store(path) as store:
        width = store.execute("SELECT max(feature) + 1 FROM features")[0][0]
        where = f"feature >= {width - n}"
        store.execute(f"DELETE FROM scores WHERE scorer = 'embedding' AND {where}")
        settings = EngineSettings(concurrency=64, progress=False)
        if not store.execute(f"SELECT count(*) FROM explanations WHERE explainer = 'token-lookup' "
                             f"AND {where}")[0][0]:
            explain_features(store, ExplainSpec("offline:none", "token-lookup", where=where), settings=settings)
        cpu, wall = time.process_time(), time.perf_counter()
        stats = score_features(store, ScoreSpec("offline:none", "embedding", where=where,
                                                explainer="token-lookup"), settings=settings)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"embedding scorer: {stats.succeeded} features, cpu {stats.succeeded / cpu:.1f}/s "
              f"wall {stats.succeeded / wall:.1f}/s")
        print("mean score", store.execute(f"SELECT avg(score), count(*) FROM scores WHERE scorer = 'embedding' "
                                          f"AND {where}")[0])
    print("peak RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


if __name__ == "__main__":
    main()
