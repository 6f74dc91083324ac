"""The accumulators on their own, against brute force over many random batches."""

from __future__ import annotations

import math

import torch

from featurelens.core.extraction.accumulators import BINS_PER_DECADE, FeatureStats
from featurelens.core.extraction.quantile_sampling import quantile_bins, uniform_key
from featurelens.core.extraction.random_examples import RandomPool
from featurelens.core.extraction.topk_examples import BestWindows


def test_best_windows_keeps_the_true_top_k_across_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    n_features, k, context = 7, 4, 3
    best = BestWindows(n_features, k, context, torch.device("cpu"))
    seen: dict[int, list[tuple[float, int]]] = {f: [] for f in range(n_features)}
    window = 0
    for _ in range(30):
        count = int(torch.randint(0, 12, (1,), generator=generator))
        features = torch.randint(0, n_features, (count,), generator=generator).sort().values
        seqs = torch.arange(window, window + count)
        window += count
        scores = torch.rand(count, generator=generator) + 0.01
        table = torch.rand(count, context, generator=generator)
        for f, s, sc in zip(features.tolist(), seqs.tolist(), scores.tolist(), strict=True):
            seen[f].append((sc, s))
        keep = scores > best.threshold(features)
        best.offer(features[keep], seqs[keep], scores[keep], torch.arange(count)[keep], table)
        for f, s, row in zip(features[keep].tolist(), seqs[keep].tolist(), table[keep], strict=True):
            slots = (best.seq[f] == s).nonzero()
            if slots.numel():
                assert torch.equal(best.gather(torch.tensor([f]), slots[0])[0], row)
    seq, _, order = best.ranked(0, n_features)
    for f in range(n_features):
        expected = [s for _, s in sorted(seen[f], reverse=True)[:k]]
        kept = [s for s in seq[f][order[f]].tolist() if s >= 0]
        assert kept == expected


def test_stats_quantiles_and_histogram_are_exact_to_a_bin() -> None:
    generator = torch.Generator().manual_seed(1)
    stats = FeatureStats.empty(3, torch.device("cpu"))
    values = {0: torch.rand(5000, generator=generator) * 3, 1: torch.exp(torch.randn(800, generator=generator)),
              2: torch.empty(0)}
    for f, v in values.items():
        stats.update(torch.full((v.numel(),), f, dtype=torch.long), v, v.numel())
    quantiles = stats.quantiles((0.1, 0.5, 0.9))
    width = 10 ** (1 / BINS_PER_DECADE)
    for f in (0, 1):
        exact = torch.quantile(values[f].double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
        ratio = quantiles[f] / exact
        assert bool(((ratio > 1 / width) & (ratio < width)).all())
        edges, counts = stats.histogram(f)
        assert sum(counts) == values[f].numel() and len(edges) == len(counts) + 1
        assert edges[0] == float(values[f].min()) and edges[-1] == float(values[f].max())
    assert torch.isnan(quantiles[2]).all() and stats.histogram(2) == ([], [])
    assert stats.n_tokens == 5800


def test_reservoir_keys_are_uniform_and_bins_have_equal_counts() -> None:
    keys = uniform_key(torch.arange(20000), 3, seed=0)
    assert 0 <= float(keys.min()) and float(keys.max()) < 1
    assert abs(float(keys.mean()) - 0.5) < 0.01
    histogram = torch.histc(keys.float(), bins=10, min=0, max=1)
    assert float(histogram.min()) > 1800
    assert not torch.equal(keys, uniform_key(torch.arange(20000), 4, seed=0))
    window_max = torch.tensor([[5.0, 1.0, 3.0, 2.0, 4.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, True, False]])
    order, bins = quantile_bins(window_max, valid, 2)
    assert order[0, :5].tolist() == [1, 3, 2, 4, 0]
    assert bins[0].tolist() == [0, 0, 0, 1, 1, -1]


def test_random_pool_chooses_only_silent_windows() -> None:
    pool = RandomPool(size=6, seed=0)
    fired_in = {}
    for batch in range(5):
        seqs = torch.arange(batch * 4, batch * 4 + 4)
        features = torch.tensor([0, 1, 1, 2])
        windows = torch.tensor([0, 0, 2, 3])
        for f, w in zip(features.tolist(), windows.tolist(), strict=True):
            fired_in.setdefault(f, set()).add(int(seqs[w]))
        pool.offer(seqs, features, windows)
    assert pool.seq.numel() == 6
    seq, valid = pool.choose(0, 4, 3)
    for f in range(4):
        chosen = seq[f][valid[f]].tolist()
        assert chosen and not set(chosen) & fired_in.get(f, set())
        assert set(chosen) <= set(pool.seq.tolist())
    assert math.isclose(float(valid[3].sum()), 3)  # feature 3 never fired: any pool window
