"""The sentence-model stages against the model's own forward limit on the same texts, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_limit.py STORE [--last N] [--batch-sizes 64,128,256]
[--keep SCORED] [--previous]

STORE is copied (never written; ``--keep`` copies the scored copy out, to compare scores). The last ``N`` features that fired (all by default) get
token-lookup labels if they have none, outside the timing, and the sentence model is loaded
before any timing starts. Then:

1. the texts each stage embeds are collected: for the embedding scorer, every fired
   labelled feature's label and test windows (as the scorer chooses them); for the
   explanation-search fill, the explanations' texts; each stage embeds each distinct text
   once, so the limit is measured on the distinct texts;
2. the model's forward limit on those texts: a bare loop written here, not the shipped
   code (tokenize all, sort by token length, batches of each ``--batch-sizes`` size padded
   to their own longest text, forward under ``torch.inference_mode``, mean-pool,
   normalize; torch threads = cores), the best batch size kept;
3. the stages as shipped, on the same store: ``score_features`` with the embedding scorer
   (engine, cache, writes) and :func:`featurelens.core.store.explanation_search.embed_missing`.

``--previous`` also times the recipe the stages used before token-length batching
(character-sorted batches padded by the tokenizer) on the scorer's texts, against the limit.

It prints, by wall and CPU time (this process; the model's threads are in it), each
stage's features a second, the limit in texts and in features a second, the ratio
stage / limit, the texts a second a model would need for 2,000 features a second, the
largest difference between the limit loop's vectors and the shipped ones, and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from featurelens.core.host import protocols
from featurelens.core.model.sentence_embedding import _load, default_model_path, embed, embedding_device
from featurelens.core.selection import Selection, stream_records
from featurelens.core.store import explanation_search
from featurelens.llm.engine import EngineSettings
from featurelens.llm.offline import OFFLINE_CHUNK
from featurelens.llm.window_text import plain
from featurelens.scorers.embedding import EmbeddingScorer
from featurelens.scorers.score_jobs import ScoreSpec, score_features
from featurelens.scorers.scoring_windows import test_windows

from labelled_copy import labelled_copy  # benchmarks/, this script's own folder

TARGET = 2_000


def timed(call):
    cpu, wall = time.process_time(), time.perf_counter()
    result = call()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def forward_limit(texts: list[str], batch_size: int):
    """The bare model path: tokenize, length-sorted batches, forward, mean-pool, normalize."""
    import torch

    device = embedding_device()  # where the shipped embed() runs the model
    tokenizer, model = _load(str(default_model_path()), str(device))
    ids = tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = len(ids[rows[-1]])
            tokens = torch.tensor([ids[r] + [0] * (width - len(ids[r])) for r in rows]).to(device)
            mask = torch.tensor([[1] * len(ids[r]) + [0] * (width - len(ids[r])) for r in rows]).to(device)
            hidden = model(input_ids=tokens, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).float()
            out[rows] = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1).cpu()
    return out


def previous_recipe(texts: list[str], batch_size: int):
    """The embedding recipe before token-length batching: texts sorted by characters, each
    batch padded by the tokenizer to its longest text (what ``--previous`` times)."""
    import torch

    device = embedding_device()
    tokenizer, model = _load(str(default_model_path()), str(device))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[r] for r in rows], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            batch = {name: value.to(device) for name, value in batch.items()}
            hidden = model(**batch).last_hidden_state
            weights = batch["attention_mask"].unsqueeze(-1).float()
            out[rows] = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1).cpu()
    return out


def best_limit(texts: list[str], sizes: list[int]):
    """``(wall, cpu, vectors, batch size)`` of the fastest batch size by CPU time."""
    best = None
    for size in sizes:
        wall, cpu, vectors = timed(lambda size=size: forward_limit(texts, size))
        print(f"  forward limit, batches of {size}: {len(texts) / wall:,.0f} texts/s wall, "
              f"{len(texts) / cpu:,.0f} texts/s CPU")
        if best is None or cpu < best[1]:
            best = (wall, cpu, vectors, size)
    return best


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--last", type=int, default=None, help="the last N fired features (default: all)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the scored store here afterwards")
    parser.add_argument("--previous", action="store_true",
                        help="also time the previous recipe (character-sorted, tokenizer-padded) on the scorer's texts")
    parser.add_argument("--batch-sizes", default="128", help="comma-separated batch sizes for the limit")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    torch.set_num_threads(os.cpu_count() or 1)
    embed(["warm"], str(default_model_path()))  # the model loaded once, outside the timing
    settings = EngineSettings(concurrency=64, progress=False)
    with labelled_copy(args.store, args.last, args.keep) as (store, where, labels):
        scorer = EmbeddingScorer()
        scorer_texts: dict[str, None] = {}
        n_features = 0
        for records in stream_records(store, Selection(where=f"({where}) AND fire_count > 0"), OFFLINE_CHUNK,
                                      protocols.example_kinds(scorer), protocols.example_fallbacks(scorer)):
            for record in records:
                label = labels.get((record.dictionary_id, record.feature))
                if label is None or not record.examples:
                    continue
                n_features += 1
                windows, _ = test_windows(record, scorer.n_activating, scorer.n_random, scorer.window, scorer.name)
                scorer_texts[label] = None
                scorer_texts.update(dict.fromkeys(plain(w.example.tokens) for w in windows))
        label_texts = [t for (t,) in store.execute("SELECT DISTINCT text FROM explanations")]
        n_explanations = store.execute("SELECT count(*) FROM explanations")[0][0]
        texts = list(scorer_texts)
        del scorer_texts
        print(f"embedding scorer: {n_features:,} labelled fired features ({where}), {len(texts):,} distinct "
              f"texts ({len(texts) / max(n_features, 1):.2f} a feature); fill: {n_explanations:,} explanations, "
              f"{len(label_texts):,} distinct texts")
        rows = []
        print("scorer texts:")
        lw, lc, vectors, size = best_limit(texts, sizes)
        shipped = embed(texts, str(default_model_path()), batch_size=EmbeddingScorer.batch_size)
        vector_diff = float((shipped - vectors).abs().max())
        if args.previous:
            pw, pc, old = timed(lambda: previous_recipe(texts, EmbeddingScorer.batch_size))
            print(f"  previous recipe (character-sorted, tokenizer-padded, batches of "
                  f"{EmbeddingScorer.batch_size}): {len(texts) / pw:,.0f} texts/s wall, {len(texts) / pc:,.0f} "
                  f"texts/s CPU; limit / previous {pw / lw:.2f}x by wall, {pc / lc:.2f}x by CPU; largest vector "
                  f"difference {float((old - vectors).abs().max()):.2e}")
            del old
        del shipped, vectors
        sw, sc, done = timed(lambda: score_features(
            store, ScoreSpec("offline:none", "embedding", where=where, explainer="token-lookup"),
            settings=settings).succeeded)
        rows.append(("embedding scorer", done, sw, sc, len(texts), lw, lc, size))
        print("fill texts:")
        fw, fc, fill_vectors, fsize = best_limit(label_texts, sizes)
        del fill_vectors
        ew, ec, filled = timed(lambda: explanation_search.embed_missing(store, show_progress=False))
        rows.append(("explanation fill", filled, ew, ec, len(label_texts), fw, fc, fsize))
    print(f"limit loop against the shipped embed(): largest vector difference {vector_diff:.2e}")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; torch threads {torch.get_num_threads()}")
    print(f"{'stage':<18} {'features':>9} {'stage feat/s':>18} {'limit texts/s':>18} {'limit feat/s':>18} "
          f"{'stage/limit':>13} {'texts/s for 2,000 feat/s':>25}")
    print(f"{'':<18} {'':>9} {'wall / CPU':>18} {'wall / CPU':>18} {'wall / CPU':>18} {'wall / CPU':>13}")
    for name, n, wall, cpu, n_texts, lwall, lcpu, _ in rows:
        print(f"{name:<18} {n:>9,} {n / wall:>8,.0f} / {n / cpu:>7,.0f} "
              f"{n_texts / lwall:>8,.0f} / {n_texts / lcpu:>7,.0f} {n / lwall:>8,.0f} / {n / lcpu:>7,.0f} "
              f"{lwall / wall:>5.2f} / {lcpu / cpu:>5.2f} {TARGET * n_texts / max(n, 1):>25,.0f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
