"""Associative merges of extraction states, so shards can be reduced anywhere and combined.

A sharded extraction (featurelens.scale) reduces disjoint runs of windows into partial
:class:`ExtractionState` objects and folds them together here. Every accumulator has
an exact merge:

- counts, histogram bins and token counts add; maxima and minima take the max/min;
- sums add in float64 (the only result that depends on order, to ~1e-15 relative);
- top windows and the hash-keyed quantile reservoir offer the other state's occupied
  slots to :meth:`BestWindows.offer`, the very rule a batch uses, so the kept windows
  are the K best by score over the union: the same set as one pass over all windows;
- the random pool keeps the smallest window keys over both pools.

Equal scores are decided by window id (the earlier window is kept and ranked first)
in a batch, in a merge and in the final ranking alike, so merging disjoint shards is
associative and commutative and gives the same windows as one pass.
"""

from __future__ import annotations

import torch

from featurelens.core.extraction.accumulators import FeatureStats
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.state import ExtractionState
from featurelens.core.extraction.topk_examples import BestWindows


def merge_stats(into: FeatureStats, other: FeatureStats) -> None:
    """Add ``other``'s counts and sums to ``into`` and widen its extremes."""
    into.n_tokens += other.n_tokens
    into.fire_count += other.fire_count.to(into.fire_count.device)
    into.total += other.total.to(into.total.device)
    into.max = torch.maximum(into.max, other.max.to(into.max.device))
    into.min = torch.minimum(into.min, other.min.to(into.min.device))
    into.widen_hist()
    into.hist += other.hist.to(into.hist.device)


def occupied(best: BestWindows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(feature, slot, seq, score)`` of every filled slot, sorted by feature."""
    feature, slot = torch.nonzero(best.seq >= 0, as_tuple=True)  # row-major: sorted by feature
    return feature, slot, best.seq[feature, slot].long(), best.score[feature, slot]


def absorb(into: BestWindows, feature: torch.Tensor, seq: torch.Tensor, score: torch.Tensor,
           acts: torch.Tensor) -> None:
    """Offer windows (sorted by feature, one per feature and window) to ``into``;
    ``acts [n, context]`` are their dense activations."""
    if into.k == 0 or feature.numel() == 0:
        return
    device = into.score.device
    feature, seq, score = feature.to(device), seq.to(device), score.to(device)
    # ties with the lowest kept window enter too: offer() then keeps the earlier window,
    # whichever side it came from, so merging is order-independent
    above = score >= into.threshold(feature)
    rows = torch.nonzero(above).flatten()
    into.offer(feature[rows], seq[rows], score[rows], torch.arange(rows.numel(), device=device),
               acts.to(device)[rows])


def merge_best(into: BestWindows, other: BestWindows) -> None:
    """Keep, per feature, the K best windows of both (windows that cannot enter are never
    made dense)."""
    if into.k == 0:
        return
    feature, slot, seq, score = occupied(other)
    rows = torch.nonzero(score.to(into.score.device) >= into.threshold(feature.to(into.score.device))).flatten()
    rows = rows.to(feature.device)
    absorb(into, feature[rows], seq[rows], score[rows], other.gather(feature[rows], slot[rows]))


def merge_pool(into: RandomPool, other: RandomPool) -> None:
    """Keep the ``size`` windows with the smallest keys over both pools."""
    keys = torch.cat([into.key, other.key])
    keep = torch.argsort(keys, stable=True)[: into.size]
    firing = list(into.firing) + list(other.firing)
    into.seq, into.key = torch.cat([into.seq, other.seq])[keep], keys[keep]
    into.firing = [firing[i] for i in keep.tolist()]


def merge_states(into: ExtractionState, other: ExtractionState) -> ExtractionState:
    """Fold ``other`` into ``into`` (in place) and return ``into``."""
    if into.settings != other.settings or into.context != other.context:
        raise ValueError("Only states of the same extraction settings can be merged.")
    merge_stats(into.stats, other.stats)
    merge_best(into.top, other.top)
    merge_best(into.reservoir, other.reservoir)
    merge_pool(into.pool, other.pool)
    return into
