"""Partial extraction states as bytes: what a worker sends back for one shard.

Only occupied slots travel (a shard touches a small part of a wide dictionary), as
safetensors bytes: plain tensors, no pickled objects, readable on any node. The
driver rebuilds an :class:`ExtractionState` and merges it (core.extraction.merge).
"""

from __future__ import annotations

import torch
from safetensors.torch import load, save

from featurelens.core.extraction.merge import absorb, merge_pool, occupied
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.state import ExtractionState, Settings, _one_cpu_thread
from featurelens.core.extraction.topk_examples import BestWindows


def to_bytes(state: ExtractionState) -> bytes:
    """Serialise the occupied part of ``state``."""
    stats = state.stats
    fired = torch.nonzero(stats.fire_count).flatten()
    bins = torch.nonzero(stats.hist).flatten()
    tensors = {
        "n_tokens": torch.tensor([stats.n_tokens], dtype=torch.long),
        "stats.feature": fired, "stats.fire_count": stats.fire_count[fired],
        "stats.total": stats.total[fired], "stats.max": stats.max[fired], "stats.min": stats.min[fired],
        "hist.index": bins, "hist.count": stats.hist[bins],
    }
    for name, best in (("top", state.top), ("reservoir", state.reservoir)):
        for field, value in zip(("feature", "seq", "score", "acts"), occupied(best), strict=True):
            tensors[f"{name}.{field}"] = value
    pool = state.pool.state()
    for field in ("seq", "key", "firing", "lengths"):
        tensors[f"pool.{field}"] = pool[field]  # type: ignore[assignment]
    return save({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()})


def _fill(best: BestWindows, tensors: dict[str, torch.Tensor], name: str) -> None:
    """Put a partial's windows back into an empty ``best`` (slots in arrival order)."""
    feature = tensors[f"{name}.feature"]
    if feature.numel() == 0:
        return
    counts = torch.bincount(feature, minlength=best.score.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(feature.numel()) - starts[feature]
    device = best.score.device
    feature, slot = feature.to(device), slot.to(device)
    best.score[feature, slot] = tensors[f"{name}.score"].to(device)
    best.seq[feature, slot] = tensors[f"{name}.seq"].to(device)
    best.acts[feature, slot] = tensors[f"{name}.acts"].to(device)
    best.low = best.score.min(dim=1).values


def from_bytes(data: bytes, n_features: int, context: int, settings: Settings,
               device: torch.device) -> ExtractionState:
    """Rebuild the state :func:`to_bytes` wrote."""
    tensors = load(data)
    state = ExtractionState(n_features, context, settings, device)
    stats = state.stats
    stats.n_tokens = int(tensors["n_tokens"][0])
    fired = tensors["stats.feature"].to(device)
    for field in ("fire_count", "total", "max", "min"):
        getattr(stats, field)[fired] = tensors[f"stats.{field}"].to(device)
    stats.hist[tensors["hist.index"].to(device)] = tensors["hist.count"].to(device)
    _fill(state.top, tensors, "top")
    _fill(state.reservoir, tensors, "reservoir")
    state.pool.load({field: tensors[f"pool.{field}"] for field in ("seq", "key", "firing", "lengths")})
    return state


def merge_bytes(into: ExtractionState, data: bytes) -> None:
    """Merge a partial written by :func:`to_bytes` straight into ``into``.

    The same result as ``merge_states(into, from_bytes(...))`` without building a dense
    ``[d_sae, K, context]`` state per shard (hundreds of MB for wide dictionaries).
    """
    with _one_cpu_thread(into.stats.fire_count.device):  # many small ops: see state.py
        _merge_tensors(into, load(data))


def _merge_tensors(into: ExtractionState, tensors: dict[str, torch.Tensor]) -> None:
    stats, device = into.stats, into.stats.fire_count.device
    stats.n_tokens += int(tensors["n_tokens"][0])
    fired = tensors["stats.feature"].to(device)
    stats.fire_count.index_add_(0, fired, tensors["stats.fire_count"].to(device))
    stats.total.index_add_(0, fired, tensors["stats.total"].to(device))
    stats.max[fired] = torch.maximum(stats.max[fired], tensors["stats.max"].to(device))
    stats.min[fired] = torch.minimum(stats.min[fired], tensors["stats.min"].to(device))
    stats.hist.index_add_(0, tensors["hist.index"].to(device), tensors["hist.count"].to(device))
    for name, best in (("top", into.top), ("reservoir", into.reservoir)):
        absorb(best, *(tensors[f"{name}.{field}"] for field in ("feature", "seq", "score", "acts")))
    pool = RandomPool(into.pool.size, into.pool.seed)
    pool.load({field: tensors[f"pool.{field}"] for field in ("seq", "key", "firing", "lengths")})
    merge_pool(into.pool, pool)
