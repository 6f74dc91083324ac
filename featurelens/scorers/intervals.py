"""Confidence intervals for scores, so a scorer knows when it has seen enough windows.

- Simulation's correlation is computed over all tokens of all windows concatenated,
  but tokens within a window are not independent, so a Fisher z interval over tokens
  would be far too narrow. The interval here is a percentile bootstrap over *windows*
  (each resample draws whole windows with replacement), seeded by the feature so the
  same answers always give the same interval.
- Detection and fuzzing report an accuracy over windows, a proportion: Wilson's score
  interval, which behaves at 0 and 1 where the normal approximation does not.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

#: Bootstrap resamples; 400 keep the 95 % bounds stable to about +-0.01 at these sizes.
RESAMPLES = 400


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``successes / n``; ``None`` when ``n`` is 0."""
    if n <= 0:
        return None
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_correlation(windows: Sequence[tuple[Sequence[float], Sequence[float]]], seed: int,
                          confidence: float = 0.95,
                          resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Percentile interval of the pooled Pearson correlation, resampling whole windows.

    ``windows`` holds ``(truth, predicted)`` per window. ``None`` when fewer than two
    windows or when most resamples are undefined (constant truth or predictions).
    """
    import numpy as np  # here: the CLI registers scorers without loading numpy

    if len(windows) < 2:
        return None
    rng = np.random.default_rng(seed)
    k = len(windows)
    draws = rng.integers(0, k, size=(resamples, k))
    counts = np.zeros((resamples, k))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return percentile_interval(window_stats(windows), counts, confidence)


def window_stats(windows: Sequence[tuple[Sequence[float], Sequence[float]]]):
    """Per-window sums (n, sum t, sum p, sum t², sum p², sum tp): a resample's pooled
    correlation is its window counts times these, so no resample copies any tokens."""
    import numpy as np

    stats = np.zeros((len(windows), 6))
    for i, (truth, predicted) in enumerate(windows):
        t = np.asarray(truth, dtype=np.float64)
        p = np.asarray(predicted, dtype=np.float64)
        stats[i] = (len(t), t.sum(), p.sum(), (t * t).sum(), (p * p).sum(), (t * p).sum())
    return stats


def percentile_interval(stats, counts, confidence: float) -> tuple[float, float] | None:
    """Percentile interval of the pooled correlation over resamples (``counts``: one row
    of window multiplicities per resample); ``None`` when most resamples are undefined."""
    import numpy as np

    resamples = counts.shape[0]
    n, st, sp, stt, spp, stp = (counts @ stats).T
    var_t = stt - st * st / n
    var_p = spp - sp * sp / n
    cov = stp - st * sp / n
    ok = (var_t > 1e-12 * n) & (var_p > 1e-12 * n)
    if ok.sum() < resamples / 2:
        return None
    r = np.clip(cov[ok] / np.sqrt(var_t[ok] * var_p[ok]), -1.0, 1.0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(r, [tail, 100 - tail])
    return float(low), float(high)
