"""Random non-activating examples: windows where a feature did not fire at all.

Scorers need negatives. Rather than tracking every (feature, window) pair, one global
pool keeps a uniform sample of windows (bottom-M keys of a hash of the window id) with
the set of features that fired in each. At the end each feature takes, in its own
hash order, the first pool windows where it did not fire. The pool is small and fixed,
and like the quantile reservoir it depends only on ids, so resuming changes nothing.
"""

from __future__ import annotations

import torch

from featurelens.core.extraction.quantile_sampling import uniform_key


class RandomPool:
    """A fixed-size uniform sample of windows, each with the features that fired in it."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.seq = torch.empty(0, dtype=torch.long)
        self.key = torch.empty(0, dtype=torch.float64)
        self.firing: list[torch.Tensor] = []

    def offer(self, seqs: torch.Tensor, group_features: torch.Tensor, group_windows: torch.Tensor) -> None:
        """Offer a batch's windows; ``group_*`` pair each window slot with a feature that fired."""
        seqs = seqs.cpu()
        keys = uniform_key(seqs, -1, self.seed)
        all_keys = torch.cat([self.key, keys])
        keep = torch.argsort(all_keys, stable=True)[: self.size]
        features, windows = group_features.cpu(), group_windows.cpu()
        held = self.key.numel()
        # the firing features of only those new windows that enter (once the pool is full,
        # few do), each in the groups' order
        firing = {i: features[windows == i - held] for i in keep.tolist() if i >= held}
        all_seq = torch.cat([self.seq, seqs])
        self.seq, self.key = all_seq[keep], all_keys[keep]
        self.firing = [self.firing[i] if i < held else firing[i] for i in keep.tolist()]

    def choose(self, first: int, last: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For features ``first..last-1``: ``n`` pool windows each where it did not fire.

        :return: ``seq [F, n]`` window ids (-1 where fewer than ``n`` exist) in key order.
        """
        count = last - first
        if self.seq.numel() == 0 or n == 0:
            return torch.full((count, n), -1, dtype=torch.long), torch.zeros((count, n), dtype=torch.bool)
        features = torch.arange(first, last)
        keys = uniform_key(self.seq[None, :], features[:, None], self.seed + 1)
        fired = torch.zeros((count, self.seq.numel()), dtype=torch.bool)
        for column, firing in enumerate(self.firing):
            inside = firing[(firing >= first) & (firing < last)] - first
            fired[inside, column] = True
        keys = torch.where(fired, torch.inf, keys)
        take = min(n, self.seq.numel())
        best = keys.topk(take, dim=1, largest=False, sorted=True)
        seq = torch.full((count, n), -1, dtype=torch.long)
        valid = torch.zeros((count, n), dtype=torch.bool)
        seq[:, :take] = self.seq[best.indices]
        valid[:, :take] = torch.isfinite(best.values)
        return torch.where(valid, seq, -1), valid

    def state(self) -> dict[str, object]:
        lengths = torch.tensor([f.numel() for f in self.firing], dtype=torch.long)
        flat = torch.cat(self.firing) if self.firing else torch.empty(0, dtype=torch.long)
        return {"seq": self.seq, "key": self.key, "firing": flat, "lengths": lengths}

    def load(self, state: dict[str, object]) -> None:
        self.seq, self.key = state["seq"], state["key"]  # type: ignore[assignment]
        self.firing = list(torch.split(state["firing"], state["lengths"].tolist()))  # type: ignore[arg-type,union-attr]
