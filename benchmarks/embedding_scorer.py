"""The sentence-model stages (embedding scorer, explanation-search fill): embedding each
distinct text once against embedding every feature's texts, measured in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_scorer.py STORE [--last N]

STORE is copied (never written). The last ``N`` features that fired (all of them by
default) get token-lookup labels if they have none, outside the timing (the copy's other
explanations are deleted, so both fills embed the slice's), and the sentence model is
loaded before any timing starts. Then, on the same records:

- the embedding scorer, per-feature path: each chunk's distinct texts embedded (a cache
  of that chunk only) and each feature's similarities computed on their own, the way the
  scorer worked before the shared text-vector cache (kept here as the baseline);
- the embedding scorer as shipped (:class:`featurelens.scorers.embedding.EmbeddingScorer`:
  a bounded run-wide cache, each distinct text embedded once, each chunk scored in bulk),
  first outside the engine (same records, same chunks as the baseline), then the whole
  stage through ``score_features`` (writes included);
- the explanation-search fill, per-explanation path (every explanation's text embedded,
  512 a page) against :func:`featurelens.core.store.explanation_search.embed_missing`.

It prints how repeated the texts are (windows and explanations: all, distinct), features
a second by wall and by CPU time (this process; the model's threads are in it), the
ratio shipped / per-feature by CPU time, the largest score and vector differences between
the two paths, and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from featurelens.core.host import protocols
from featurelens.core.model.sentence_embedding import default_model_path, embed
from featurelens.core.selection import Selection, stream_records
from featurelens.core.store import explanation_search
from featurelens.llm.engine import EngineSettings
from featurelens.llm.offline import OFFLINE_CHUNK
from featurelens.llm.window_text import plain
from featurelens.scorers.embedding import EmbeddingScorer, auroc
from featurelens.scorers.score_jobs import ScoreSpec, score_features
from featurelens.scorers.scoring_windows import test_windows

from labelled_copy import labelled_copy  # benchmarks/, this script's own folder


class PerFeatureScorer(EmbeddingScorer):
    """The baseline: a cache of one chunk's texts, and every feature scored on its own."""

    def prepare_chunk(self, pairs):
        texts = [t for record, explanation in pairs for t in self._texts(record, explanation)]
        wanted = dict.fromkeys(texts)
        kept = {t: v for t, v in getattr(self, "_chunk", {}).items() if t in wanted}
        missing = [t for t in wanted if t not in kept]
        if missing:
            kept.update(zip(missing, embed(missing, str(default_model_path()), batch_size=128)))
        self._chunk = kept

    def _texts(self, record, explanation):
        windows, _ = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        return [explanation] + [plain(w.example.tokens) for w in windows]

    def score(self, record, explanation, responses, capabilities=None):
        import torch

        windows, held_out = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        vectors = torch.stack([self._chunk[t] for t in [explanation] + [plain(w.example.tokens) for w in windows]])
        similarity = (vectors[1:] @ vectors[0]).tolist()
        positive = [s for s, w in zip(similarity, windows) if w.activating]
        negative = [s for s, w in zip(similarity, windows) if not w.activating]
        return auroc(positive, negative), similarity


def _cpu() -> float:
    return time.process_time()


def timed(call):
    cpu, wall = _cpu(), time.perf_counter()
    result = call()
    return time.perf_counter() - wall, _cpu() - cpu, result


def old_fill(store, page: int = 512) -> int:
    """The baseline explanation-search fill: every explanation's text embedded."""
    import pyarrow as pa

    from featurelens.core.model.sentence_embedding import DIMENSIONS, MODEL_NAME

    rows_all = store.execute("SELECT e.explanation_id, e.text FROM explanations e ANTI JOIN explanation_embeddings v "
                             "USING (explanation_id) ORDER BY e.explanation_id")
    for start in range(0, len(rows_all), page):
        rows = rows_all[start:start + page]
        vectors = embed([text for _, text in rows], str(default_model_path())).float().numpy()
        store.insert("explanation_embeddings", pa.table({
            "explanation_id": pa.array([eid for eid, _ in rows]), "model": pa.array([MODEL_NAME] * len(rows)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIMENSIONS)}),
            on_conflict="ignore")
    return len(rows_all)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--last", type=int, default=None, help="the last N fired features (default: all)")
    args = parser.parse_args()
    embed(["warm"], str(default_model_path()))  # the model loaded once, outside the timing
    settings = EngineSettings(concurrency=64, progress=False)
    with labelled_copy(args.store, args.last) as (store, where, labels):
        scorers = {"per-feature": PerFeatureScorer(), "shipped": EmbeddingScorer()}
        kinds = protocols.example_kinds(scorers["shipped"])
        fallbacks = protocols.example_fallbacks(scorers["shipped"])

        def chunks():
            for records in stream_records(store, Selection(where=f"({where}) AND fire_count > 0"),
                                          OFFLINE_CHUNK, kinds, fallbacks):
                yield [(r, labels[(r.dictionary_id, r.feature)]) for r in records
                       if (r.dictionary_id, r.feature) in labels and r.examples]

        pairs_seen, windows_seen, distinct_windows = 0, 0, set()
        for pairs in chunks():
            for record, explanation in pairs:
                texts = scorers["per-feature"]._texts(record, explanation)[1:]
                windows_seen += len(texts)
                distinct_windows.update(texts)
            pairs_seen += len(pairs)
        print(f"{pairs_seen:,} labelled features that fired ({where}); test windows {windows_seen:,}, "
              f"distinct texts {len(distinct_windows):,} ({len(distinct_windows) / max(windows_seen, 1):.3f}); "
              f"labels {len(labels):,}, distinct {len(set(labels.values())):,} "
              f"({len(set(labels.values())) / max(len(labels), 1):.3f})")
        del distinct_windows
        results: dict[str, dict] = {}
        rates: dict[str, tuple[float, float, int]] = {}
        for name, scorer in scorers.items():
            out: dict = {}

            def run(scorer=scorer, out=out) -> int:
                for pairs in chunks():
                    scorer.prepare_chunk(pairs)
                    for record, explanation in pairs:
                        result = scorer.score(record, explanation, [])
                        out[record.feature] = (result if isinstance(result, tuple)
                                               else (result.score, result.details["similarities"]))
                return len(out)

            rates[name] = timed(run)
            results[name] = out
        old, new = results["per-feature"], results["shipped"]
        score_diff = max((abs((old[f][0] or 0) - (new[f][0] or 0)) for f in old), default=0.0)
        changed = sum(old[f][0] != new[f][0] for f in old)
        sim_diff = max((abs(a - b) for f in old for a, b in zip(old[f][1], new[f][1])), default=0.0)
        cache = scorers["shipped"].vectors()
        print(f"shipped scorer cache: {cache.embedded:,} texts embedded, {cache.reused:,} reused, "
              f"{len(cache):,} kept (capacity {cache.capacity:,})")
        print(f"scores, shipped against per-feature: largest difference {score_diff:.2e} ({changed:,} of "
              f"{len(old):,} not bit-identical); largest similarity difference {sim_diff:.2e} "
              f"(shipped rounds to 4 decimals)")
        rates["score_features (shipped, writes)"] = timed(lambda: score_features(
            store, ScoreSpec("offline:none", "embedding", where=where, explainer="token-lookup"),
            settings=settings).succeeded)
        stored = dict(store.execute(f"SELECT feature, score FROM scores WHERE scorer = 'embedding' AND {where}"))
        stored_diff = max((abs((stored.get(f) or 0) - (new[f][0] or 0)) for f in new), default=0.0)
        print(f"stored scores against the shipped scorer's: largest difference {stored_diff:.2e}")

        store.execute("DELETE FROM explanation_embeddings")
        rates["explanation fill, per-explanation"] = timed(lambda: old_fill(store))
        store.execute("CREATE TEMP TABLE old_vectors AS SELECT * FROM explanation_embeddings")
        store.execute("DELETE FROM explanation_embeddings")
        rates["explanation fill, shipped"] = timed(
            lambda: explanation_search.embed_missing(store, show_progress=False))
        vector_diff = store.execute(
            "SELECT max(list_max(list_transform(list_zip(o.embedding::FLOAT[], n.embedding::FLOAT[]), "
            "lambda p: abs(p[1] - p[2])))), count(*) FROM old_vectors o JOIN explanation_embeddings n "
            "USING (explanation_id)")[0]
        print(f"explanation vectors, shipped against per-explanation: largest difference {vector_diff[0]:.2e} "
              f"over {vector_diff[1]:,}")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch threads "
          f"{__import__('torch').get_num_threads()}")
    print(f"{'stage':<36} {'features/s wall':>16} {'features/s CPU':>16} {'wall s':>8} {'CPU s':>8}")
    for name, (wall, cpu, n) in rates.items():
        print(f"{name:<36} {n / wall:>16,.0f} {n / max(cpu, 1e-9):>16,.0f} {wall:>8.1f} {cpu:>8.1f}")
    for new_name, old_name in (("shipped", "per-feature"),
                               ("explanation fill, shipped", "explanation fill, per-explanation")):
        (w1, c1, n1), (w0, c0, n0) = rates[new_name], rates[old_name]
        print(f"ratio {new_name} / {old_name}: {(n1 / c1) / (n0 / c0):.1f}x by CPU, "
              f"{(n1 / w1) / (n0 / w0):.1f}x by wall")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
