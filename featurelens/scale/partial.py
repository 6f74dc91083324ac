"""Partial extraction states as bytes: what a worker sends back for one shard.

Only occupied slots travel (a shard touches a small part of a wide dictionary), and of
each kept window only its nonzero activations, as the state itself keeps them (a feature
fires on a few of a window's tokens). A worker that carries its state across shards sends only the slots filled
since its last partial (``since``). Safetensors bytes: plain tensors, no pickled
objects, readable on any node. The driver merges them (core.extraction.merge).
"""

from __future__ import annotations

import torch
from safetensors.torch import load, save

from featurelens.core.extraction.merge import absorb, merge_pool
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.state import ExtractionState, Settings, _one_cpu_thread
from featurelens.core.extraction.topk_examples import BestWindows, dense_rows


def to_bytes(state: ExtractionState, since: dict[str, torch.Tensor] | None = None) -> bytes:
    """Serialise the occupied part of ``state``.

    ``since`` maps ``top``/``reservoir`` to the window ids their slots held at the last
    partial: only slots whose window changed travel (the others were sent already).
    """
    stats = state.stats
    fired = torch.nonzero(stats.fire_count).flatten()
    bins = torch.nonzero(stats.hist).flatten()
    tensors = {
        "n_tokens": torch.tensor([stats.n_tokens], dtype=torch.long),
        "stats.feature": fired, "stats.fire_count": stats.fire_count[fired],
        "stats.total": stats.total[fired], "stats.max": stats.max[fired], "stats.min": stats.min[fired],
        "hist.index": bins, "hist.count": stats.hist[bins].long(),
    }
    for name, best in (("top", state.top), ("reservoir", state.reservoir)):
        feature, slot = _changed(best, None if since is None else since[name])
        tensors.update({f"{name}.feature": feature, f"{name}.seq": best.seq[feature, slot].long(),
                        f"{name}.score": best.score[feature, slot]})
        tensors[f"{name}.acts_index"], tensors[f"{name}.acts_value"] = best.entries(feature, slot)
    pool = state.pool.state()
    for field in ("seq", "key", "firing", "lengths"):
        tensors[f"pool.{field}"] = pool[field]  # type: ignore[assignment]
    return save({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()})


def _changed(best: BestWindows, since: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(feature, slot)`` of the occupied slots (row-major: sorted by feature), limited to
    slots whose window is not the one in ``since``."""
    held = best.seq >= 0
    if since is not None:
        held &= best.seq != since
    feature, slot = torch.nonzero(held, as_tuple=True)
    return feature, slot


def _entries(tensors: dict[str, torch.Tensor], name: str, context: int,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial's activation entries (``row * context + position``, value), limited to
    windows ``rows`` (renumbered 0..) when given."""
    index, value = tensors[f"{name}.acts_index"], tensors[f"{name}.acts_value"]
    if rows is None:
        return index, value
    n = tensors[f"{name}.feature"].numel()
    new_row = torch.full((n,), -1, dtype=torch.long)
    new_row[rows.cpu()] = torch.arange(rows.numel())
    row = new_row[index // context]
    kept = row >= 0
    return row[kept] * context + index[kept] % context, value[kept]


def _acts(tensors: dict[str, torch.Tensor], name: str, context: int, device: torch.device,
          rows: torch.Tensor) -> torch.Tensor:
    """The dense ``[len(rows), context]`` activations of windows ``rows``."""
    index, value = _entries(tensors, name, context, rows)
    return dense_rows(index, value, rows.numel(), context, device)


def _place(best: BestWindows, feature: torch.Tensor, seq: torch.Tensor, score: torch.Tensor,
           acts_index: torch.Tensor, acts_value: torch.Tensor) -> None:
    """Put windows of features that hold none into their first slots (``feature`` sorted)."""
    counts = torch.bincount(feature, minlength=best.score.shape[0])
    slot = torch.arange(feature.numel(), device=feature.device) - (torch.cumsum(counts, 0) - counts)[feature]
    best.place(feature, slot, seq, score, acts_index, acts_value)
    touched = torch.unique_consecutive(feature)
    best.low[touched] = best.score[touched].min(dim=1).values


def _fill(best: BestWindows, tensors: dict[str, torch.Tensor], name: str) -> None:
    """Put a partial's windows back into an empty ``best`` (slots in arrival order)."""
    feature = tensors[f"{name}.feature"]
    if feature.numel() == 0:
        return
    device = best.score.device
    index, value = _entries(tensors, name, best.context)
    _place(best, feature.to(device), tensors[f"{name}.seq"], tensors[f"{name}.score"], index, value)
    best.low = best.score.min(dim=1).values


def from_bytes(data: bytes, n_features: int, context: int, settings: Settings,
               device: torch.device) -> ExtractionState:
    """Rebuild the state :func:`to_bytes` wrote."""
    tensors = load(data)
    state = ExtractionState(n_features, context, settings, device)
    stats = state.stats
    stats.n_tokens = int(tensors["n_tokens"][0])
    stats.widen_hist()
    fired = tensors["stats.feature"].to(device)
    for field in ("fire_count", "total", "max", "min"):
        getattr(stats, field)[fired] = tensors[f"stats.{field}"].to(device)
    stats.hist[tensors["hist.index"].to(device)] = tensors["hist.count"].to(device, stats.hist.dtype)
    _fill(state.top, tensors, "top")
    _fill(state.reservoir, tensors, "reservoir")
    state.pool.load({field: tensors[f"pool.{field}"] for field in ("seq", "key", "firing", "lengths")})
    return state


def merge_bytes(into: ExtractionState, data: bytes) -> None:
    """Merge a partial written by :func:`to_bytes` straight into ``into``.

    The same result as ``merge_states(into, from_bytes(...))`` without building a whole
    state per shard (its statistics alone are ``d_sae x N_BINS`` counts).
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
    stats.widen_hist()
    stats.hist.index_add_(0, tensors["hist.index"].to(device), tensors["hist.count"].to(device, stats.hist.dtype))
    for name, best in (("top", into.top), ("reservoir", into.reservoir)):
        feature, score = tensors[f"{name}.feature"].to(device), tensors[f"{name}.score"].to(device)
        if best.k == 0 or feature.numel() == 0:
            continue
        seq = tensors[f"{name}.seq"].to(device)
        # features the driver holds nothing of yet take the partial's windows as they are
        # (at most K each: they come from a state of K slots); no top-k needed
        vacant = ~(best.seq >= 0).any(dim=1)[feature]
        rows = torch.nonzero(vacant).flatten()
        if rows.numel():
            _place(best, feature[rows], seq[rows], score[rows], *_entries(tensors, name, into.context, rows))
        # the others: only windows that can enter are made dense (absorb's own rule: ties enter too)
        rows = torch.nonzero(~vacant & (score >= best.threshold(feature))).flatten()
        acts = _acts(tensors, name, into.context, device, rows)
        absorb(best, feature[rows], seq[rows], score[rows], acts)
    pool = RandomPool(into.pool.size, into.pool.seed)
    pool.load({field: tensors[f"pool.{field}"] for field in ("seq", "key", "firing", "lengths")})
    merge_pool(into.pool, pool)
