"""Rows for the store: sequences as they stream, features and examples at the end.

Everything is built as Arrow columns straight from tensors (list columns from one flat
buffer plus offsets, constant strings as one-entry dictionary arrays) and written in bulk
inserts: a wide dictionary has millions of example rows, and Python objects per row would
dominate the run.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import torch

from featurelens.core.extraction.accumulators import N_BINS, FeatureStats, bin_edges
from featurelens.core.extraction.packing import Window


class TokenText:
    """Each token id decoded on its own, memoised (the same ids recur constantly)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: Sequence[int]) -> list[str]:
        missing = [i for i in set(ids) if i not in self.cache]
        if missing:
            for token_id, text in zip(missing, self.tokenizer.batch_decode([[i] for i in missing]), strict=True):
                self.cache[token_id] = text
        return [self.cache[i] for i in ids]


def _lists(flat: np.ndarray, lengths: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=value_type))


def _fixed_lists(matrix: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    rows, width = matrix.shape
    return _lists(matrix.reshape(-1), np.full(rows, width), value_type)


def sequence_rows(windows: list[Window], corpus_id: str, model_id: str, text: TokenText) -> pa.Table:
    n = len(windows)
    return pa.table({
        "corpus_id": pa.array([corpus_id] * n, pa.string()),
        "sequence_id": pa.array([w.sequence_id for w in windows], pa.int64()),
        "model_id": pa.array([model_id] * n, pa.string()),
        "tokens": pa.array([w.tokens for w in windows], pa.list_(pa.int32())),
        "token_strs": pa.array([text(w.tokens) for w in windows], pa.list_(pa.string())),
        "document": pa.array([w.document for w in windows], pa.string()),
    })


def _histograms(stats: FeatureStats, first: int, last: int) -> tuple[pa.ListArray, pa.ListArray]:
    """Per feature of ``first..last-1``, the bins from its smallest to its largest value:
    edges and counts."""
    hist = stats.hist.view(-1, N_BINS)[first:last].cpu().numpy().astype(np.int64)
    fired = hist.any(axis=1)
    lo = np.where(fired, (hist != 0).argmax(axis=1), 0)
    hi = np.where(fired, N_BINS - 1 - (hist[:, ::-1] != 0).argmax(axis=1), -1)
    bins = np.arange(N_BINS)
    counts = hist[(bins >= lo[:, None]) & (bins <= hi[:, None])]
    n_counts = np.where(fired, hi - lo + 1, 0)
    edge_index = np.arange(N_BINS + 1)
    edge_mask = (edge_index >= lo[:, None]) & (edge_index <= hi[:, None] + 1) & fired[:, None]
    edges = np.broadcast_to(bin_edges().numpy(), edge_mask.shape)[edge_mask].copy()
    n_edges = np.where(fired, n_counts + 1, 0)
    ends = np.cumsum(n_edges)
    starts = ends - n_edges
    minima = stats.min[first:last].double().cpu().numpy()
    maxima = stats.max[first:last].double().cpu().numpy()
    edges[starts[fired]] = minima[fired]  # outer edges: the smallest and largest values
    edges[ends[fired] - 1] = maxima[fired]
    return _lists(edges, n_edges, pa.float64()), _lists(counts, n_counts, pa.int64())


def feature_rows(dictionary_id: str, corpus_id: str, stats: FeatureStats, levels: Sequence[float],
                 logits: tuple[torch.Tensor, ...] | None, text: TokenText, first: int = 0,
                 last: int | None = None) -> pa.Table:
    """One row per feature of ``first..last-1`` (default: all), features that never fired
    included (density 0, NULL statistics); ``logits`` hold those features' rows only."""
    last = stats.fire_count.numel() if last is None else last
    n = last - first
    fire = stats.fire_count[first:last].cpu().numpy()
    fired = fire > 0
    total = stats.total[first:last].cpu().numpy()
    quantiles = stats.quantiles(tuple(levels), first, last).numpy()
    edges, counts = _histograms(stats, first, last)
    null = pa.array(~fired)
    quantile_lists = _fixed_lists(np.nan_to_num(quantiles), pa.float64())
    columns: dict[str, Any] = {
        "dictionary_id": pa.array([dictionary_id] * n, pa.string()),
        "feature": pa.array(np.arange(first, last, dtype=np.int32)),
        "corpus_id": pa.array([corpus_id] * n, pa.string()),
        "n_tokens": pa.array(np.full(n, stats.n_tokens, dtype=np.int64)),
        "fire_count": pa.array(fire.astype(np.int64)),
        "density": pa.array(fire / max(stats.n_tokens, 1)),
        "max_activation": pa.array(stats.max[first:last].double().cpu().numpy(), mask=~fired),
        "mean_activation": pa.array(np.divide(total, np.maximum(fire, 1)), mask=~fired),
        "quantiles": pa.ListArray.from_arrays(quantile_lists.offsets, quantile_lists.values, mask=null),
        "histogram_edges": edges,
        "histogram_counts": counts,
    }
    if logits is not None:
        columns.update(logit_columns(logits, text))
    return pa.table(columns)


def logit_columns(logits: tuple[torch.Tensor, ...], text: TokenText) -> dict[str, pa.ListArray]:
    """``top_logits``, ``top_logit_values``, ``bottom_logits``, ``bottom_logit_values`` of
    ``(top_ids, top_values, bottom_ids, bottom_values)`` (``[n, width]`` each): token strings
    and float64 values; rows whose ids are -1 had no effects computed and are NULL."""
    top_ids, top_vals, bottom_ids, bottom_vals = logits
    n, width = top_ids.shape
    missing = pa.array((top_ids[:, 0] < 0).numpy()) if width else None
    columns: dict[str, pa.ListArray] = {}
    for name, ids, vals in (("top", top_ids, top_vals), ("bottom", bottom_ids, bottom_vals)):
        names = _lists(np.array(text(ids.clamp_min(0).reshape(-1).tolist()), dtype=object),
                       np.full(n, width), pa.string())
        values = _fixed_lists(np.nan_to_num(vals.double().numpy()), pa.float64())
        columns[f"{name}_logits"] = pa.ListArray.from_arrays(names.offsets, names.values, mask=missing)
        columns[f"{name}_logit_values"] = pa.ListArray.from_arrays(values.offsets, values.values,
                                                                   mask=missing)
    return columns


def repeated(value: str, n: int) -> pa.DictionaryArray:
    """``n`` copies of one string as a one-entry dictionary array: no ``n`` Python strings
    (a chunk of a wide dictionary has hundreds of thousands of example rows)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int8)), pa.array([value], pa.string()))


def example_rows(dictionary_id: str, corpus_id: str, kind: str, seq: torch.Tensor, acts: torch.Tensor | int,
                 order: torch.Tensor | None = None, bins: torch.Tensor | None = None,
                 first_feature: int = 0, features: torch.Tensor | None = None) -> pa.Table:
    """Rows for ``[F, K]`` window ids and ``[F, K, T]`` activations (slots with id -1 skipped).

    Row ``i`` is feature ``first_feature + i``, or ``features[i]`` when given. ``order``
    permutes each feature's slots before ranking; ``bins`` labels quantiles (in ordered
    positions). ``acts`` given as a window length ``T`` means activations that are all
    zero (random non-activating windows): no ``[F, K, T]`` tensor is made for them. Only
    the occupied slots' activations are gathered (a wide dictionary's features hold a few
    windows of their K slots).
    """
    if order is not None:
        seq = seq.gather(1, order)
    valid = seq >= 0
    rank = torch.cumsum(valid.long(), dim=1) - 1
    feature, slot = torch.nonzero(valid, as_tuple=True)
    n = feature.numel()
    if isinstance(acts, torch.Tensor):
        chosen = acts[feature, slot if order is None else order[feature, slot]].float()
        maxima = chosen.max(dim=1) if n else None
        max_value = (maxima.values if maxima else torch.zeros(0)).numpy()
        max_position = (maxima.indices.int() if maxima else torch.zeros(0, dtype=torch.int32)).numpy()
        values = chosen.numpy()
    else:  # all zeros: the maximum and its position are those of one zero window
        values = np.zeros((n, acts), dtype=np.float32)
        at_zero = torch.zeros(1, acts).max(dim=1)
        max_value = np.full(n, float(at_zero.values[0]), dtype=np.float32)
        max_position = np.full(n, int(at_zero.indices[0]), dtype=np.int32)
    ids = feature + first_feature if features is None else features[feature]
    return pa.table({
        "dictionary_id": repeated(dictionary_id, n),
        "feature": pa.array(ids.int().numpy()),
        "kind": repeated(kind, n),
        "rank": pa.array(rank[feature, slot].int().numpy()),
        "corpus_id": repeated(corpus_id, n),
        "sequence_id": pa.array(seq[feature, slot].numpy()),
        "activations": _fixed_lists(values, pa.float32()),
        "max_activation": pa.array(max_value, pa.float32()),
        "max_position": pa.array(max_position, pa.int32()),
        "quantile": pa.array(bins[feature, slot].int().numpy()) if bins is not None else pa.nulls(n, pa.int32()),
    })
