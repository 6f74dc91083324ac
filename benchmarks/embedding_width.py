"""The embedding scorer at dictionary width: the whole store's window cost, and the rate a
feature once its explanation's vector is stored, against 2,000 features/s, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_width.py STORE [--last 8192]

STORE is an extracted store (never written: the slice is scored on a working copy,
benchmarks/labelled_copy.py). The sentence model is loaded before any timing. Then:

1. **Whole store.** For every fired feature, the test windows the embedding scorer picks
   (``test_windows``, as shipped) are read and their texts counted: all of them, and the
   distinct ones (what the scorer's text-vector cache embeds once per run).
2. **The model on the distinct windows**: all of them embedded once (the shipped
   ``embed()``, the scorer's batch size) into one text-vector cache. This is what a scorer
   run over the whole store pays for windows, whatever its width; the cache is kept for 4.
   Every fired feature outside the slice then gets an explanation ("width-padding") and a
   stored random unit vector, outside any timing, so the warm scorer's reads of stored
   vectors (step 5) run against a table as wide as a searched store, not the slice's.
3. **Cold slice**: ``score_features`` with the embedding scorer over the token-lookup labels
   of the last ``--last`` fired features, in a fresh scorer (empty cache, no stored
   explanation vectors): what scoring only this slice costs.
4. **Fill**: ``embed_missing`` stores the slice's explanation vectors (search by meaning).
5. **Warm slice**: the cold slice's scores deleted, scored again by a scorer whose cache is
   step 2's and which reads the stored explanation vectors: the model embeds nothing, so
   this is the scorer's own rate a feature in a run over the whole store. ``--passes``
   times each, alternating: as shipped (the engine draws each chunk of jobs, the scorer's
   ``prepare_chunk`` included, and finishes the offline ones with the cyclic collector
   paused) and with the collector left on (``unpaused.unpaused_batches``); the best pass of
   each is compared (this VM's speed
   drifts by a third over minutes, so only passes side by side compare). Its scores must
   equal the cold slice's (largest difference printed; the script exits 1 above 1e-6).

It prints each step's features (or texts) a second by wall and CPU time, the warm rate
against 2,000 features/s, and what a whole-store run costs by these rates: windows once
(step 2) plus every fired feature at the warm rate, with and without the explanations'
vectors already stored (without: each explanation at the fill's rate as well).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import featurelens.llm.engine as engine_module
from featurelens.core.gc_pause import paused_batches
from featurelens.core.host import protocols
from featurelens.core.model.sentence_embedding import MODEL_NAME, default_model_path, embed, embedding_device
from featurelens.core.model.text_vectors import TextVectors, text_digest
from featurelens.core.selection import Selection, stream_records
from featurelens.core.store import explanation_search
from featurelens.llm.engine import EngineSettings
from featurelens.llm.offline import OFFLINE_CHUNK
from featurelens.llm.window_text import plain
from featurelens.scorers.embedding import EmbeddingScorer
from featurelens.scorers.score_jobs import ScoreSpec, score_features
from featurelens.scorers.scoring_windows import test_windows

from labelled_copy import labelled_copy  # benchmarks/, this script's own folder
from unpaused import unpaused_batches

TARGET = 2_000


def timed(call):
    cpu, wall = time.process_time(), time.perf_counter()
    result = call()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def window_texts(store, where: str) -> tuple[int, int, dict[bytes, str]]:
    """``(features, windows, distinct)``: the scorer's test windows over the fired features
    matching ``where``, and one text per distinct window (by the cache's digest)."""
    scorer = EmbeddingScorer()
    features = windows = 0
    distinct: dict[bytes, str] = {}
    for records in stream_records(store, Selection(where=f"({where}) AND fire_count > 0"), OFFLINE_CHUNK,
                                  protocols.example_kinds(scorer), protocols.example_fallbacks(scorer)):
        for record in records:
            if not record.examples:
                continue
            features += 1
            chosen, _ = test_windows(record, scorer.n_activating, scorer.n_random, scorer.window, scorer.name)
            for window in chosen:
                text = plain(window.example.tokens)
                distinct.setdefault(text_digest(text), text)
            windows += len(chosen)
    return features, windows, distinct


def pad_vectors(store, where: str) -> int:
    """An explanation and a stored random unit vector for every fired feature outside
    ``where`` (explainer ``width-padding``); returns how many."""
    store.execute(
        "INSERT INTO explanations (explanation_id, dictionary_id, feature, explainer, llm, text, options) "
        "SELECT 'pad-' || dictionary_id || '-' || feature, dictionary_id, feature, 'width-padding', 'offline:none', "
        f"'padding ' || feature, '{{}}' FROM features WHERE fire_count > 0 AND NOT ({where})")
    store.execute(
        "INSERT INTO explanation_embeddings (explanation_id, model, embedding) "
        "SELECT explanation_id, ?, list_transform(v, lambda x: x / sqrt(list_dot_product(v, v)))::FLOAT[384] "
        "FROM (SELECT explanation_id, list_transform(range(384), lambda x: random()::FLOAT - 0.5) AS v "
        "FROM explanations WHERE explainer = 'width-padding')", [MODEL_NAME])
    return int(store.execute("SELECT count(*) FROM explanations WHERE explainer = 'width-padding'")[0][0])


def scored(store, where: str) -> dict[tuple[int, str], float | None]:
    return {(f, e): s for f, e, s in store.execute(
        f"SELECT feature, explanation_id, score FROM scores WHERE scorer = 'embedding' AND {where}")}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--last", type=int, default=8192, help="the slice: the last N fired features")
    parser.add_argument("--passes", type=int, default=2,
                        help="warm passes with the collector paused and on, alternating (each this many times)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    path = str(default_model_path())
    embed(["warm"], path)  # the model loaded once, outside the timing
    settings = EngineSettings(concurrency=64, progress=False)
    spec_of = lambda where: ScoreSpec("offline:none", "embedding", where=where, explainer="token-lookup")  # noqa: E731
    with labelled_copy(args.store, args.last) as (store, where, labels):
        rw, rc, (features, windows, distinct) = timed(lambda: window_texts(store, "true"))
        print(f"whole store: {features:,} fired features, {windows:,} test windows, {len(distinct):,} distinct "
              f"window texts ({len(distinct) / max(windows, 1):.4f} of them, {len(distinct) / max(features, 1):.3f} "
              f"a feature); read in {rw:.1f} s wall, {rc:.1f} s CPU ({features / rw:,.0f} features/s)")
        shared = TextVectors(path, capacity=max(len(distinct) + 2 * OFFLINE_CHUNK, 65_536))
        texts = list(distinct.values())
        del distinct
        ww, wc, _ = timed(lambda: shared.lookup(texts))
        n_windows = len(texts)
        print(f"model on the distinct windows ({embedding_device()}): {n_windows:,} texts in {ww:.1f} s wall, "
              f"{wc:.1f} s CPU ({n_windows / ww:,.0f} texts/s)")

        n_slice = len(labels)
        pw, _, padded = timed(lambda: pad_vectors(store, where))
        print(f"stored vectors outside the slice: {padded:,} (written in {pw:.0f} s, not timed below)")
        cw, cc, cold_done = timed(lambda: score_features(store, spec_of(where), settings=settings).succeeded)
        cold = scored(store, where)
        store.execute(f"DELETE FROM scores WHERE scorer = 'embedding' AND {where}")
        fw, fc, filled = timed(lambda: explanation_search.embed_missing(store, show_progress=False))
        original = EmbeddingScorer.vectors
        EmbeddingScorer.vectors = lambda self: shared  # the cache a whole-store run holds by now
        passes: list[tuple[bool, int, float, float]] = []
        try:
            before = shared.embedded
            for paused in (True, False) * args.passes:
                # shipped: jobs drawn with the cyclic collector paused; the other: left on
                engine_module.paused_batches = paused_batches if paused else unpaused_batches
                store.execute(f"DELETE FROM scores WHERE scorer = 'embedding' AND {where}")
                passes.append((paused, *reversed(timed(
                    lambda: score_features(store, spec_of(where), settings=settings).succeeded))))
            embedded_warm = shared.embedded - before
        finally:
            EmbeddingScorer.vectors = original
            engine_module.paused_batches = paused_batches
        warm = scored(store, where)
        best = {flag: max((p for p in passes if p[0] == flag), key=lambda p: p[1] / p[3]) for flag in (True, False)}
        _, warm_done, hc, hw = best[True]
    differences = [abs(a - b) for key, a in cold.items() for b in [warm.get(key)]
                   if a is not None and b is not None]
    mismatched = sum(1 for key in cold if (cold[key] is None) != (warm.get(key) is None)) + len(set(warm) ^ set(cold))
    largest = max(differences, default=0.0)
    print(f"slice: the last {n_slice:,} fired features ({where}), token-lookup labels")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch threads {torch.get_num_threads()}")
    print(f"{'step':<44} {'done':>9} {'wall s':>8} {'CPU s':>8} {'per s wall':>11} {'per s CPU':>10}")
    for name, n, wall, cpu in (("scorer, cold (fresh cache, nothing stored)", cold_done, cw, cc),
                               ("fill (explanation vectors stored)", filled, fw, fc),
                               ("scorer, warm (window cache, stored vectors)", warm_done, hw, hc)):
        print(f"{name:<44} {n:>9,} {wall:>8.1f} {cpu:>8.1f} {n / wall:>11,.0f} {n / cpu:>10,.0f}")
    for paused, done, cpu, wall in passes:
        print(f"  warm pass, collector {'paused' if paused else 'on    '} while jobs are drawn: {done / wall:,.0f} "
              f"features/s wall, {done / cpu:,.0f} CPU")
    (_, on_done, _, on_wall) = best[False]
    print(f"warm, collector paused / on (best pass of each, alternating): {(warm_done / hw) / (on_done / on_wall):.2f}x")
    print(f"warm scorer: texts embedded {embedded_warm}; scores against the cold run: largest difference "
          f"{largest:.2e} over {len(differences):,}, {mismatched} missing or undefined in one run only")
    warm_rate, fill_rate, window_rate = warm_done / hw, filled / fw, n_windows / ww
    print(f"warm scorer / {TARGET:,} features/s = {warm_rate / TARGET:.2f}")
    with_vectors = n_windows / window_rate + features / warm_rate
    print(f"whole store by these rates: scorer with stored explanation vectors {with_vectors:,.0f} s "
          f"({features / with_vectors:,.0f} features/s); fill {features / fill_rate:,.0f} s "
          f"({fill_rate:,.0f} features/s, the model's cost of one explanation); scorer without stored vectors "
          f"{with_vectors + features / fill_rate:,.0f} s ({features / (with_vectors + features / fill_rate):,.0f} "
          f"features/s)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    return 1 if largest > 1e-6 or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
