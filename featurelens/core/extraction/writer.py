"""Rows for the store: sequences as they stream, features and examples at the end.

Everything is built as columns (polars frames) and written with one bulk insert per
table; nothing is inserted row by row.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import polars as pl
import torch

from featurelens.core.extraction.accumulators import FeatureStats
from featurelens.core.extraction.packing import Window


class TokenText:
    """Each token id decoded on its own, memoised (the same ids recur constantly)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: Sequence[int]) -> list[str]:
        missing = [i for i in set(ids) if i not in self.cache]
        if missing:
            for token_id, text in zip(missing, self.tokenizer.batch_decode([[i] for i in missing])):
                self.cache[token_id] = text
        return [self.cache[i] for i in ids]


def sequence_rows(windows: list[Window], corpus_id: str, model_id: str, text: TokenText) -> pl.DataFrame:
    return pl.DataFrame({
        "corpus_id": [corpus_id] * len(windows),
        "sequence_id": [w.sequence_id for w in windows],
        "model_id": [model_id] * len(windows),
        "tokens": [w.tokens for w in windows],
        "token_strs": [text(w.tokens) for w in windows],
        "document": [w.document for w in windows],
    }, schema={"corpus_id": pl.Utf8, "sequence_id": pl.Int64, "model_id": pl.Utf8,
               "tokens": pl.List(pl.Int32), "token_strs": pl.List(pl.Utf8), "document": pl.Utf8})


def feature_rows(dictionary_id: str, corpus_id: str, stats: FeatureStats, levels: Sequence[float],
                 logits: tuple[torch.Tensor, ...] | None, text: TokenText) -> pl.DataFrame:
    """One row per feature, features that never fired included (density 0)."""
    n = stats.fire_count.numel()
    fire = stats.fire_count.cpu()
    total = stats.total.cpu()
    maxima = stats.max.cpu()
    quantiles = stats.quantiles(tuple(levels))
    n_tokens = stats.n_tokens
    edges, counts = zip(*(stats.histogram(f) for f in range(n))) if n else ((), ())
    frame: dict[str, Any] = {
        "dictionary_id": [dictionary_id] * n,
        "feature": list(range(n)),
        "corpus_id": [corpus_id] * n,
        "n_tokens": [n_tokens] * n,
        "fire_count": fire.tolist(),
        "density": (fire.double() / max(n_tokens, 1)).tolist(),
        "max_activation": [float(m) if c else None for m, c in zip(maxima.tolist(), fire.tolist())],
        "mean_activation": [t / c if c else None for t, c in zip(total.tolist(), fire.tolist())],
        "quantiles": [None if math.isnan(row[0]) else row for row in quantiles.tolist()],
        "histogram_edges": list(edges),
        "histogram_counts": list(counts),
    }
    if logits is not None:
        top_ids, top_vals, bottom_ids, bottom_vals = logits
        frame["top_logits"] = [text(row) for row in top_ids.tolist()]
        frame["top_logit_values"] = top_vals.double().tolist()
        frame["bottom_logits"] = [text(row) for row in bottom_ids.tolist()]
        frame["bottom_logit_values"] = bottom_vals.double().tolist()
    schema = {"quantiles": pl.List(pl.Float64), "histogram_edges": pl.List(pl.Float64),
              "histogram_counts": pl.List(pl.Int64), "max_activation": pl.Float64,
              "mean_activation": pl.Float64}
    return pl.DataFrame(frame, schema_overrides=schema)


def example_rows(dictionary_id: str, corpus_id: str, kind: str, seq: torch.Tensor, acts: torch.Tensor,
                 order: torch.Tensor | None = None, bins: torch.Tensor | None = None,
                 first_feature: int = 0) -> pl.DataFrame:
    """Rows for ``[F, K]`` window ids and ``[F, K, T]`` activations (slots with id -1 skipped).

    Row ``i`` is feature ``first_feature + i``. ``order`` permutes each feature's slots
    before ranking; ``bins`` labels quantiles.
    """
    if order is not None:
        seq = seq.gather(1, order)
        acts = acts.gather(1, order[:, :, None].expand_as(acts))
    valid = seq >= 0
    rank = torch.cumsum(valid.long(), dim=1) - 1
    feature, slot = torch.nonzero(valid, as_tuple=True)
    chosen = acts[feature, slot]
    maxima = chosen.max(dim=1)
    return pl.DataFrame({
        "dictionary_id": [dictionary_id] * feature.numel(),
        "feature": (feature + first_feature).int().tolist(),
        "kind": [kind] * feature.numel(),
        "rank": rank[feature, slot].int().tolist(),
        "corpus_id": [corpus_id] * feature.numel(),
        "sequence_id": seq[feature, slot].tolist(),
        "activations": chosen.tolist(),
        "max_activation": maxima.values.tolist(),
        "max_position": maxima.indices.int().tolist(),
        "quantile": bins[feature, slot].int().tolist() if bins is not None else [None] * feature.numel(),
    }, schema_overrides={"activations": pl.List(pl.Float32), "max_activation": pl.Float32,
                         "quantile": pl.Int32, "rank": pl.Int32, "feature": pl.Int32,
                         "max_position": pl.Int32})
