"""Partial extraction states as bytes: what a worker sends back for one shard.

Only occupied slots travel (a shard touches a small part of a wide dictionary), and of
each kept window only its nonzero activations (a feature fires on a few of a window's
tokens: the dense rows were 9 parts in 10 zeros, ~23 MiB per 4096-token shard at 9216
latents). A worker that carries its state across shards sends only the slots filled
since its last partial (``since``). Safetensors bytes: plain tensors, no pickled
objects, readable on any node. The driver merges them (core.extraction.merge).
"""

from __future__ import annotations

import torch
from safetensors.torch import load, save

from featurelens.core.extraction.merge import absorb, merge_pool, occupied
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.state import ExtractionState, Settings, _one_cpu_thread
from featurelens.core.extraction.topk_examples import BestWindows


def _sparse_rows(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(flat index, value)`` of the nonzero entries of ``acts [n, context]``."""
    flat = acts.reshape(-1)
    index = torch.nonzero(flat).flatten()
    return index, flat[index]


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
        "hist.index": bins, "hist.count": stats.hist[bins],
    }
    for name, best in (("top", state.top), ("reservoir", state.reservoir)):
        feature, seq, score, acts = _changed(best, None if since is None else since[name])
        tensors.update({f"{name}.feature": feature, f"{name}.seq": seq, f"{name}.score": score})
        tensors[f"{name}.acts_index"], tensors[f"{name}.acts_value"] = _sparse_rows(acts)
    pool = state.pool.state()
    for field in ("seq", "key", "firing", "lengths"):
        tensors[f"pool.{field}"] = pool[field]  # type: ignore[assignment]
    return save({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()})


def _changed(best: BestWindows, since: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`occupied`, limited to slots whose window is not the one in ``since``."""
    if since is None:
        return occupied(best)
    feature, slot = torch.nonzero((best.seq >= 0) & (best.seq != since), as_tuple=True)
    return feature, best.seq[feature, slot], best.score[feature, slot], best.acts[feature, slot]


def _acts(tensors: dict[str, torch.Tensor], name: str, context: int, device: torch.device,
          rows: torch.Tensor | None = None) -> torch.Tensor:
    """The dense ``[len(rows), context]`` activations of windows ``rows`` (default: all)."""
    index, value = tensors[f"{name}.acts_index"], tensors[f"{name}.acts_value"]
    n = tensors[f"{name}.feature"].numel()
    if rows is not None:  # renumber the chosen rows 0.., drop the entries of the others
        new_row = torch.full((n,), -1, dtype=torch.long)
        new_row[rows.cpu()] = torch.arange(rows.numel())
        row = new_row[index // context]
        kept = row >= 0
        index, value, n = row[kept] * context + index[kept] % context, value[kept], rows.numel()
    acts = torch.zeros(n * context, device=device)
    acts[index.to(device)] = value.to(device)
    return acts.view(n, context)


def _place(best: BestWindows, feature: torch.Tensor, seq: torch.Tensor, score: torch.Tensor,
           acts: torch.Tensor) -> None:
    """Put windows of features that hold none into their first slots (``feature`` sorted)."""
    counts = torch.bincount(feature, minlength=best.score.shape[0])
    slot = torch.arange(feature.numel(), device=feature.device) - (torch.cumsum(counts, 0) - counts)[feature]
    best.score[feature, slot] = score
    best.seq[feature, slot] = seq
    best.acts[feature, slot] = acts
    touched = torch.unique_consecutive(feature)
    best.low[touched] = best.score[touched].min(dim=1).values


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
    best.acts[feature, slot] = _acts(tensors, name, best.acts.shape[2], device)
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
        feature, score = tensors[f"{name}.feature"].to(device), tensors[f"{name}.score"].to(device)
        if best.k == 0 or feature.numel() == 0:
            continue
        seq = tensors[f"{name}.seq"].to(device)
        # features the driver holds nothing of yet take the partial's windows as they are
        # (at most K each: they come from a state of K slots); no top-k needed
        vacant = ~(best.seq >= 0).any(dim=1)[feature]
        rows = torch.nonzero(vacant).flatten()
        if rows.numel():
            _place(best, feature[rows], seq[rows], score[rows], _acts(tensors, name, into.context, device, rows))
        # the others: only windows that can enter are made dense (absorb's own rule: ties enter too)
        rows = torch.nonzero(~vacant & (score >= best.threshold(feature))).flatten()
        acts = _acts(tensors, name, into.context, device, rows)
        absorb(best, feature[rows], seq[rows], score[rows], acts)
    pool = RandomPool(into.pool.size, into.pool.seed)
    pool.load({field: tensors[f"pool.{field}"] for field in ("seq", "key", "firing", "lengths")})
    merge_pool(into.pool, pool)
