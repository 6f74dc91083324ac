"""Per-feature running statistics: counts, sums, extremes and a log-binned histogram.

Everything is a fixed-size tensor over features (on the GPU when there is one), updated
from the sparse (feature, value) pairs of each batch, so memory does not grow with the
corpus. Quantiles come from the histogram: its bins are log-spaced (32 per decade,
1e-4 to 1e4, about 7.5 % wide), so a quantile is exact to within one bin, interpolated
geometrically inside it; the stored histogram is those exact bin counts.

The histogram is the widest per-feature state (``N_BINS`` counts a feature), so its
counts are int32 while fewer than 2**31 tokens were counted (no bin can overflow) and
widen to int64 only beyond: 1 GB instead of 2 GB at a million features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

HIST_LOW = 1e-4
HIST_DECADES = 8
BINS_PER_DECADE = 32
N_BINS = HIST_DECADES * BINS_PER_DECADE
#: Token counts from which a histogram bin might not fit an int32.
HIST_INT32_TOKENS = 2 ** 31 - 1
#: Default quantile levels stored per feature (over tokens where the feature fired).
QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def bin_edges() -> torch.Tensor:
    """The ``N_BINS + 1`` histogram edges (float64)."""
    exponents = torch.arange(N_BINS + 1, dtype=torch.float64) / BINS_PER_DECADE
    return HIST_LOW * torch.pow(10.0, exponents)


def bin_of(values: torch.Tensor) -> torch.Tensor:
    """Histogram bin of each positive value (values outside the range go to the end bins)."""
    position = (torch.log10(values.double()) - math.log10(HIST_LOW)) * BINS_PER_DECADE
    return position.floor().clamp_(0, N_BINS - 1).long()


@dataclass
class FeatureStats:
    """Running counts and sums for ``n_features`` features."""

    fire_count: torch.Tensor
    total: torch.Tensor
    max: torch.Tensor
    min: torch.Tensor
    hist: torch.Tensor
    n_tokens: int = 0

    @classmethod
    def empty(cls, n_features: int, device: torch.device) -> "FeatureStats":
        return cls(
            fire_count=torch.zeros(n_features, dtype=torch.long, device=device),
            total=torch.zeros(n_features, dtype=torch.float64, device=device),
            max=torch.zeros(n_features, dtype=torch.float32, device=device),
            min=torch.full((n_features,), math.inf, dtype=torch.float32, device=device),
            hist=torch.zeros(n_features * N_BINS, dtype=torch.int32, device=device),
        )

    def widen_hist(self) -> None:
        """Make the histogram int64 once ``n_tokens`` could overflow an int32 bin."""
        if self.hist.dtype != torch.long and self.n_tokens >= HIST_INT32_TOKENS:
            self.hist = self.hist.long()

    def update(self, features: torch.Tensor, values: torch.Tensor, n_tokens: int) -> None:
        """Add firing pairs (``values > 0``, one per feature and token) and ``n_tokens`` counted."""
        self.n_tokens += n_tokens
        self.widen_hist()
        if features.numel() == 0:
            return
        self.fire_count.index_add_(0, features, torch.ones_like(features))
        self.total.index_add_(0, features, values.double())
        self.max.scatter_reduce_(0, features, values.float(), reduce="amax")
        self.min.scatter_reduce_(0, features, values.float(), reduce="amin")
        flat = features * N_BINS + bin_of(values)
        self.hist.index_add_(0, flat, torch.ones_like(flat, dtype=self.hist.dtype))

    def state(self) -> dict[str, object]:
        return {"fire_count": self.fire_count, "total": self.total, "max": self.max,
                "min": self.min, "hist": self.hist, "n_tokens": self.n_tokens}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> "FeatureStats":
        return cls(**state)  # type: ignore[arg-type]

    def histogram(self, feature: int) -> tuple[list[float], list[int]]:
        """(edges, counts) of the bins between the feature's smallest and largest value; the
        outer edges are those values themselves."""
        counts = self.hist[feature * N_BINS:(feature + 1) * N_BINS].cpu()
        nonzero = torch.nonzero(counts).flatten()
        if nonzero.numel() == 0:
            return [], []
        lo, hi = int(nonzero[0]), int(nonzero[-1])
        edges = bin_edges()[lo:hi + 2].tolist()
        edges[0], edges[-1] = float(self.min[feature]), float(self.max[feature])  # tight and exact
        return edges, counts[lo:hi + 1].tolist()

    def quantiles(self, levels: tuple[float, ...] = QUANTILE_LEVELS, first: int = 0,
                  last: int | None = None) -> torch.Tensor:
        """``[last - first, len(levels)]`` quantiles over firing tokens of features
        ``first..last-1`` (default: all; NaN where none fired)."""
        last = self.fire_count.numel() if last is None else last
        counts = self.hist.view(-1, N_BINS)[first:last].cpu()
        out = torch.full((counts.shape[0], len(levels)), math.nan, dtype=torch.float64)
        # only features with counts (most of a wide dictionary never fires): the rest stay NaN
        rows = torch.nonzero(counts.any(dim=1)).flatten()
        out[rows] = self._quantile_rows(counts[rows].double(), levels)
        lo_clip = self.min[first:last].double().cpu().clamp_max(math.inf)
        hi_clip = self.max[first:last].double().cpu()
        return torch.minimum(torch.maximum(out, lo_clip[:, None]), hi_clip[:, None])

    @staticmethod
    def _quantile_rows(hist: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
        """Quantiles ``[rows, len(levels)]`` of histogram rows (NaN where a row is empty),
        each interpolated geometrically inside its bin."""
        cumulative = hist.cumsum(dim=1)
        total = cumulative[:, -1:]
        edges = bin_edges()
        out = torch.full((hist.shape[0], len(levels)), math.nan, dtype=torch.float64)
        for j, level in enumerate(levels):
            target = level * total
            index = torch.searchsorted(cumulative, target).clamp_(0, N_BINS - 1)
            before = torch.where(index > 0, cumulative.gather(1, (index - 1).clamp_min(0)),
                                 torch.zeros_like(target))
            inside = hist.gather(1, index).clamp_min(1)
            fraction = ((target - before) / inside).clamp(0, 1).squeeze(1)
            lo, hi = edges[index.squeeze(1)], edges[index.squeeze(1) + 1]
            value = lo * torch.pow(hi / lo, fraction)
            out[:, j] = torch.where(total.squeeze(1) > 0, value, torch.nan)
        return out
