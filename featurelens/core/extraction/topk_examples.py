"""Per feature, the K windows with the highest score, kept as fixed-size tensors.

Used twice: with score = the window's maximum activation it holds the top examples;
with score = minus a per-(window, feature) hash it is a uniform reservoir sample for
quantile examples (see :mod:`quantile_sampling`). State is ``[d_sae, K]`` scores and
window ids plus ``[d_sae, K, context]`` per-token activations, so the examples' token
activations never need a second pass over the corpus. Each batch only touches features
whose candidates beat their current K-th score, which after the first batches is few.
"""

from __future__ import annotations

import math

import torch


class BestWindows:
    """Top-``k`` windows per feature by a score, with their per-token activations."""

    def __init__(self, n_features: int, k: int, context: int, device: torch.device):
        self.k = k
        self.score = torch.full((n_features, k), -math.inf, device=device)
        self.seq = torch.full((n_features, k), -1, dtype=torch.long, device=device)
        self.acts = torch.zeros((n_features, k, context), device=device)

    def threshold(self, features: torch.Tensor) -> torch.Tensor:
        """The score a candidate of each feature must beat to enter (kept sorted, so the last)."""
        return self.score[features, -1]

    def offer(self, features: torch.Tensor, seqs: torch.Tensor, scores: torch.Tensor,
              acts: torch.Tensor) -> None:
        """Merge candidates (one per feature and window; ``acts [C, context]``) into the state."""
        keep = scores > self.threshold(features)
        if not bool(keep.any()):
            return
        features, seqs, scores, acts = features[keep], seqs[keep], scores[keep], acts[keep]
        order = torch.argsort(features, stable=True)
        features, seqs, scores, acts = features[order], seqs[order], scores[order], acts[order]
        touched, counts = torch.unique_consecutive(features, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(features.numel(), device=features.device) - torch.repeat_interleave(starts, counts)
        row = torch.repeat_interleave(torch.arange(touched.numel(), device=features.device), counts)
        width = int(counts.max())
        n, k, context = touched.numel(), self.k, self.acts.shape[2]
        cand_score = torch.full((n, width), -math.inf, device=scores.device)
        cand_seq = torch.full((n, width), -1, dtype=torch.long, device=scores.device)
        cand_acts = torch.zeros((n, width, context), device=scores.device)
        cand_score[row, slot] = scores.float()
        cand_seq[row, slot] = seqs
        cand_acts[row, slot] = acts.float()
        all_score = torch.cat([self.score[touched], cand_score], dim=1)
        best = all_score.topk(k, dim=1, sorted=True)
        self.score[touched] = best.values
        self.seq[touched] = torch.cat([self.seq[touched], cand_seq], dim=1).gather(1, best.indices)
        all_acts = torch.cat([self.acts[touched], cand_acts], dim=1)
        self.acts[touched] = all_acts.gather(1, best.indices[:, :, None].expand(n, k, context))

    def state(self) -> dict[str, torch.Tensor]:
        return {"score": self.score, "seq": self.seq, "acts": self.acts}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.score, self.seq, self.acts = state["score"], state["seq"], state["acts"]
