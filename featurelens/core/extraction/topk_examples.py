"""Per feature, the K windows with the highest score, kept as fixed-size tensors.

Used twice: with score = the window's maximum activation it holds the top examples;
with score = a per-(window, feature) hash it is a uniform reservoir sample for quantile
examples (see :mod:`quantile_sampling`). State is ``[d_sae, K]`` scores and window ids
plus ``[d_sae, K, context]`` per-token activations, so the examples' token activations
never need a second pass over the corpus.

Slots are unordered: a candidate that makes the top K takes the slot of the entry it
evicts, so a batch costs a top-k over scores of the touched features plus one copy of
``context`` floats per entering window; nothing else moves. Order is imposed once, at
the end (:meth:`ranked`).
"""

from __future__ import annotations

import math

import torch


def rank_key(score: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (float32 score ascending, window id descending).

    The float's bits, made monotone for negatives (empty slots, padding), fill the high
    32 bits; the low 31 hold ``2**31 - 1 - seq``, so of two equal scores the later
    window is the lower key. Window ids must be below 2**31.
    """
    bits = score.float().contiguous().view(torch.int32).long()
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits * (1 << 32) + ((1 << 31) - 1 - seq.clamp_min(0))


class BestWindows:
    """Top-``k`` windows per feature by a score, with their per-token activations."""

    #: Score of an empty slot. Real scores are positive (an activation, or 1 - a hash in
    #: [0, 1)), and padding is -inf, so empty < real and padding never displaces anything.
    EMPTY = -1.0

    def __init__(self, n_features: int, k: int, context: int, device: torch.device):
        self.k = k
        self.score = torch.full((n_features, k), self.EMPTY, device=device)
        self.seq = torch.full((n_features, k), -1, dtype=torch.long, device=device)
        self.acts = torch.zeros((n_features, k, context), device=device)
        self.low = torch.full((n_features,), self.EMPTY, device=device)

    def threshold(self, features: torch.Tensor) -> torch.Tensor:
        """The score a candidate of each feature must beat to enter (the lowest kept)."""
        if self.k == 0:
            return torch.full(features.shape, math.inf, device=self.low.device)
        return self.low[features]

    def offer(self, features: torch.Tensor, seqs: torch.Tensor, scores: torch.Tensor,
              rows: torch.Tensor, table: torch.Tensor) -> None:
        """Merge candidates into the state.

        Candidates are one per (feature, window), sorted by feature, already above
        :meth:`threshold`; candidate ``i``'s per-token activations are ``table[rows[i]]``
        (a ``[*, context]`` table shared by both users, so nothing is copied until a
        candidate actually enters).
        """
        if features.numel() == 0:
            return
        scores = scores.float()
        touched, counts = torch.unique_consecutive(features, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        row = torch.repeat_interleave(torch.arange(touched.numel(), device=features.device), counts)
        column = torch.arange(features.numel(), device=features.device) - starts[row]
        n, k = touched.numel(), self.k
        cand_score = torch.full((n, int(counts.max())), -math.inf, device=scores.device)
        cand_score[row, column] = scores
        cand_index = torch.full(cand_score.shape, -1, dtype=torch.long, device=scores.device)
        cand_index[row, column] = torch.arange(features.numel(), device=features.device)
        cand_seq = torch.zeros(cand_score.shape, dtype=torch.long, device=scores.device)
        cand_seq[row, column] = seqs
        width = cand_score.shape[1]
        # evict the `width` lowest of old + new (a small top-k: much cheaper than keeping k);
        # equal scores evict the later window, so which windows are kept never depends on
        # batching, resuming or the order shards are merged in
        keys = rank_key(torch.cat([self.score[touched], cand_score], dim=1),
                        torch.cat([self.seq[touched], cand_seq], dim=1))
        lowest = keys.topk(width, dim=1, largest=False).indices
        chosen = torch.ones((n, k + width), dtype=torch.bool, device=scores.device)
        chosen.scatter_(1, lowest, False)
        evicted_row, evicted_slot = torch.nonzero(~chosen[:, :k], as_tuple=True)
        entering_row, entering_col = torch.nonzero(chosen[:, k:], as_tuple=True)
        # both lists are row-major and each row evicts as many as enter: pair them in order
        source = cand_index[entering_row, entering_col]
        feature = touched[evicted_row]
        self.score[feature, evicted_slot] = scores[source]
        self.seq[feature, evicted_slot] = seqs[source]
        self.acts[feature, evicted_slot] = table[rows[source]].float()
        self.low[touched] = self.score[touched].min(dim=1).values

    def ranked(self, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(seq, acts, order)`` of features ``first..last-1`` on the CPU; ``order`` sorts
        each feature's slots by descending score, empty slots last, equal scores by window
        id (so the order never depends on which slot a window happened to land in)."""
        by_seq = torch.argsort(self.seq[first:last], dim=1, stable=True)
        by_score = torch.argsort(self.score[first:last].gather(1, by_seq), dim=1, descending=True, stable=True)
        order = by_seq.gather(1, by_score)
        return self.seq[first:last].cpu(), self.acts[first:last].cpu(), order.cpu()

    def state(self) -> dict[str, torch.Tensor]:
        return {"score": self.score, "seq": self.seq, "acts": self.acts, "low": self.low}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.score, self.seq, self.acts, self.low = state["score"], state["seq"], state["acts"], state["low"]
