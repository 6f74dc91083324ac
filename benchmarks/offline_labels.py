"""Do LLM-free labels mean something? The token-lookup explainer and the offline scorers.

1. Planted tokens: the share of token-planted features whose token-lookup label names
   the planted token (the scorer-validation set of
   :mod:`featurelens.testing.planted_features` over 10 seeds, and 60 features of
   :mod:`featurelens.testing.planted_tokens`, a third firing on a token only after another).
2. Separation on a real store (what ``featurelens run`` wrote): every feature with a
   token-lookup label is scored with its own label and with the label of another feature
   (a fixed derangement); AUROC of own vs other scores, for token-check (every feature)
   and embedding (the first ``--embedding-features``).
3. Speed: token-lookup labels per second over records already in memory, and the ratio
   of labeling time to the time to read those records from the store.

    .venv/bin/python benchmarks/offline_labels.py --store featurelens.duckdb [--dictionary ID]
"""

from __future__ import annotations

import argparse
import random
import time

import featurelens
from featurelens.core.selection import Selection, stream_records
from featurelens.labelers.explainers.token_lookup import TokenLookupExplainer
from featurelens.llm.token_labels import parse_elements, token_key
from featurelens.scorers.embedding import EmbeddingScorer, auroc
from featurelens.scorers.token_check import TokenCheckScorer
from featurelens.testing.planted_features import PLANTED, planted_records
from featurelens.testing.planted_tokens import token_planted


def planted_check() -> tuple[int, int]:
    explainer = TokenLookupExplainer()
    hits = total = 0
    for seed in range(10):
        for record, (rule, _) in zip(planted_records(seed=seed), PLANTED.values()):
            elements = parse_elements(explainer.explain(record))
            hits += bool(elements) and all(rule(e.token) for e in elements)
            total += 1
    for planted in token_planted(60, seed=1):
        elements = parse_elements(explainer.explain(planted.record))
        hits += any(e.keys[0] == token_key(planted.token) for e in elements)
        total += 1
    return hits, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="featurelens.duckdb")
    parser.add_argument("--dictionary", default=None, help="default: the store's only/first dictionary")
    parser.add_argument("--windows", type=int, default=20, help="activating (and random) test windows")
    parser.add_argument("--embedding-features", type=int, default=24)
    args = parser.parse_args()

    hits, total = planted_check()
    print(f"planted tokens named: {hits}/{total} = {hits / total:.1%}")

    with featurelens.open_store(args.store, read_only=True) as store:
        dictionary = args.dictionary or store.execute(
            "SELECT dictionary_id FROM features GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0][0]
        selection = Selection("fire_count > 0", dictionary, None)
        started = time.perf_counter()
        records = [r for chunk in stream_records(store, selection, 256) for r in chunk]
        read_s = time.perf_counter() - started
    records = [r for r in records if r.of_kind("top") and r.of_kind("quantile") and r.of_kind("random")]

    explainer = TokenLookupExplainer()
    started = time.perf_counter()
    labels = [explainer.explain(r) for r in records]
    label_s = time.perf_counter() - started
    print(f"{len(records)} features of {dictionary}: read from the store in {read_s:.2f} s, "
          f"labeled in {label_s:.2f} s = {len(records) / label_s:,.0f} features/s "
          f"(labeling / reading = {label_s / read_s:.2f})")

    n = len(records)
    order = list(range(n))
    random.Random(0).shuffle(order)
    other = {order[i]: order[(i + 1) % n] for i in range(n)}  # a derangement: never itself
    check = TokenCheckScorer(args.windows, args.windows)
    own_scores, other_scores = [], []
    for i, record in enumerate(records):
        own = check.score(record, labels[i], []).score
        wrong = check.score(record, labels[other[i]], []).score
        if own is not None and wrong is not None:
            own_scores.append(own)
            other_scores.append(wrong)
    print(f"token-check, own label vs another feature's: AUROC {auroc(own_scores, other_scores):.3f} "
          f"over {len(own_scores)} features (mean {sum(own_scores) / len(own_scores):.3f} "
          f"vs {sum(other_scores) / len(other_scores):.3f})")

    embedding = EmbeddingScorer(10, 10)
    subset = range(min(args.embedding_features, n))
    own_e = [embedding.score(records[i], labels[i], []).score for i in subset]
    other_e = [embedding.score(records[i], labels[other[i]], []).score for i in subset]
    pairs = [(a, b) for a, b in zip(own_e, other_e) if a is not None and b is not None]
    print(f"embedding, own label vs another feature's: AUROC "
          f"{auroc([a for a, _ in pairs], [b for _, b in pairs]):.3f} over {len(pairs)} features "
          f"(mean {sum(a for a, _ in pairs) / len(pairs):.3f} vs {sum(b for _, b in pairs) / len(pairs):.3f})")


if __name__ == "__main__":
    main()
