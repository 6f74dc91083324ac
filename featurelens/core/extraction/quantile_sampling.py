"""Examples across the whole activation range, from a uniform reservoir per feature.

Scorers must see weak activations as well as the top ones. A feature's quantile
examples are a uniform random sample of the windows where it fired, sorted by the
window's maximum activation and cut into equal-count bins: the bins are then the
sample's estimate of the true activation quantiles, in one pass and fixed memory.

The sample is a bottom-R reservoir keyed by a hash of (window id, feature): a window
enters when its key is among the R smallest seen. Keys depend only on ids, never on
batch boundaries or random state, so an interrupted and resumed run draws exactly
the same sample as an uninterrupted one.
"""

from __future__ import annotations

import torch

_M1 = 0x5851F42D4C957F2D
_M2 = 0x14057B7EF767814F
_M3 = 0x2545F4914F6CDD1D


def uniform_key(seqs: torch.Tensor, features: torch.Tensor | int, seed: int) -> torch.Tensor:
    """A deterministic pseudo-random number in [0, 1) for each (window, feature) pair."""
    x = seqs.long() * _M1 + (features.long() if isinstance(features, torch.Tensor)
                             else torch.tensor(features, device=seqs.device)) * _M2 + seed
    x = x ^ ((x >> 33) & ((1 << 31) - 1))
    x = x * _M3
    x = x ^ ((x >> 29) & ((1 << 35) - 1))
    return (x & ((1 << 53) - 1)).double() / float(1 << 53)


def reservoir_score(seqs: torch.Tensor, features: torch.Tensor, seed: int) -> torch.Tensor:
    """Score for :class:`BestWindows`: the smallest keys score highest."""
    return (1.0 - uniform_key(seqs, features, seed)).float()


def quantile_bins(window_max: torch.Tensor, valid: torch.Tensor, n_bins: int,
                  tiebreak: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Order each feature's sampled windows by activation and label equal-count bins.

    :param window_max: ``[F, R]`` maximum activation of each sampled window.
    :param valid: ``[F, R]`` which slots hold a window.
    :param tiebreak: ``[F, R]`` window ids: equal maxima are ordered by them, so the order
        does not depend on slot layout (which differs between a resumed or sharded run).
    :return: ``order [F, R]`` (ascending activation, invalid last) and ``bins [F, R]``
        (bin of the window at each ordered position, 0 = weakest; -1 for invalid).
    """
    keyed = torch.where(valid, window_max, torch.inf)
    first = (torch.argsort(tiebreak, dim=1, stable=True) if tiebreak is not None
             else torch.arange(keyed.shape[1], device=keyed.device).expand_as(keyed))
    order = first.gather(1, torch.argsort(keyed.gather(1, first), dim=1, stable=True))
    count = valid.sum(dim=1, keepdim=True)
    rank = torch.arange(window_max.shape[1], device=window_max.device)[None, :]
    bins = torch.div(rank * n_bins, count.clamp_min(1), rounding_mode="floor")
    return order, torch.where(rank < count, bins, -1)
