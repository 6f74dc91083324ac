"""quantile_intervals gives exactly the shares of its plain reading: each interval's share
worked out from the whole histogram, bin by bin, on seeded odd histograms."""

from __future__ import annotations

import math
import random

from featurelens.export.neuronpedia.rows import N_INTERVALS, quantile_intervals


def plain_share(edges, counts, low, high):
    total = float(sum(counts))
    if total <= 0 or high <= low:
        return 0.0
    inside = 0.0
    for a, b, n in zip(edges, edges[1:], counts, strict=False):
        if n <= 0:
            continue
        if b <= a:
            inside += n if low <= a < high or (a == high == edges[-1]) else 0
            continue
        overlap = min(b, high) - max(a, low)
        if overlap > 0:
            inside += n * overlap / (b - a)
    return inside / total


def plain_intervals(top, edges, counts, n=N_INTERVALS):
    bounds = [top * i / n for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1],
             plain_share(edges, counts, bounds[i], bounds[i + 1] if i < n - 1 else math.nextafter(top, math.inf)))
            for i in range(n)]


def test_shares_match_the_plain_reading_on_seeded_histograms():
    rng = random.Random(7)
    nonzero = 0
    for _ in range(400):
        top = rng.choice([0.0, 1.0, rng.uniform(0.01, 20)])
        n_bins = rng.randint(0, 16)
        edges = sorted(rng.uniform(0, top or 1) for _ in range(n_bins + 1))
        if n_bins and rng.random() < 0.2:  # a bin of one value
            edges[-1] = edges[-2]
        counts = [rng.choice([0, 0, 1, rng.randint(1, 500)]) for _ in range(n_bins)]
        got = quantile_intervals(top, edges, counts)
        assert got == plain_intervals(top, edges, counts)
        nonzero += any(share > 0 for _, _, share in got)
    assert nonzero > 100
