"""The label's sentence-model forward against this CPU's float32 multiply-add peak, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_flops.py STORE [--last 8192] [--rounds 3]

At width the embedding scorer's and the explanation-search fill's cost a feature is one
all-MiniLM-L6-v2 forward over its label (BENCHMARKS.md, "The embedding scorer at a million
features"). This script asks whether any CPU code could reach 2,000 labels a second here:

1. the labels: the token-lookup labels of the last ``--last`` fired features of STORE (a
   working copy, benchmarks/labelled_copy.py; STORE is never written), each distinct text
   once, tokenized as the model sees them;
2. the arithmetic a label needs, counted from the model's config at each label's own token
   length (no padding): per layer the four attention projections ``4 x 2 L H^2``, the
   feed-forward ``2 x 2 L H I`` and the attention products ``2 x 2 L^2 H``; layer norms,
   softmax, GELU and the embedding lookup are left out, so this is a lower bound on the
   work and the ceiling below an upper bound on the rate;
3. the physical limit: the best float32 matrix-multiply rate this CPU reaches (``torch.mm``
   of 2,048 x 2,048 matrices, torch threads = cores), the most multiply-adds a second any
   forward could do;
4. the shipped ``embed()`` on the labels.

Steps 3 and 4 alternate ``--rounds`` times (this VM's speed drifts over minutes) and the best
of each is kept. It prints the labels' token lengths, MFLOP a label, the shipped rate in labels
and GFLOP a second, the matmul peak, the shipped forward's share of the peak, the ceiling in
labels a second (peak / FLOP a label), and how many times the peak 2,000 labels a second needs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from featurelens.core.model.sentence_embedding import _load, default_model_path, embed, embedding_device
from featurelens.core.model.text_vectors import BATCH_SIZE

from labelled_copy import labelled_copy  # benchmarks/, this script's own folder

TARGET = 2_000


def forward_flops(lengths: list[int], hidden: int, intermediate: int, layers: int) -> float:
    """Multiply-add FLOPs of an encoder forward over sequences of these token lengths."""
    total = 0.0
    for n in lengths:
        projections = 4 * 2 * n * hidden * hidden
        feed_forward = 2 * 2 * n * hidden * intermediate
        attention = 2 * 2 * n * n * hidden
        total += layers * (projections + feed_forward + attention)
    return total


def matmul_rate(size: int = 2048, seconds: float = 2.0) -> float:
    """Best float32 ``torch.mm`` FLOP/s over repeats of ``size`` x ``size`` products."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm the kernel and the pages
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--last", type=int, default=8192, help="label the last N fired features (0: all)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    path = str(default_model_path())
    device = embedding_device()
    tokenizer, model = _load(path, str(device))
    config = model.config
    with labelled_copy(args.store, args.last or None) as (_store, _where, labels):
        texts = sorted(set(labels.values()))
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
    flops = forward_flops(lengths, config.hidden_size, config.intermediate_size, config.num_hidden_layers)
    per_label = flops / len(texts)
    embed(texts[:BATCH_SIZE], path, BATCH_SIZE)  # warm-up outside the timing
    peaks, rates = [], []
    for round_ in range(args.rounds):
        peaks.append(matmul_rate())
        start = time.perf_counter()
        embed(texts, path, BATCH_SIZE)
        rates.append(len(texts) / (time.perf_counter() - start))
        print(f"round {round_ + 1}: matmul {peaks[-1] / 1e9:,.1f} GFLOP/s, shipped embed() "
              f"{rates[-1]:,.0f} labels/s", flush=True)
    peaks.append(matmul_rate())
    peak, rate = max(peaks), max(rates)
    ceiling = peak / per_label
    print(f"device {device}; torch threads {torch.get_num_threads()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"labels: {len(labels):,} features, {len(texts):,} distinct texts; tokens a label: mean "
          f"{sum(lengths) / len(lengths):.1f}, min {min(lengths)}, max {max(lengths)}")
    print(f"arithmetic a label (matmuls only, no padding): {per_label / 1e6:,.1f} MFLOP")
    print(f"matmul peak (best of {len(peaks)}): {peak / 1e9:,.1f} GFLOP/s")
    print(f"shipped embed() (best of {len(rates)}): {rate:,.0f} labels/s = {rate * per_label / 1e9:,.1f} GFLOP/s "
          f"= {rate * per_label / peak:.2f} of the matmul peak")
    print(f"ceiling at the matmul peak: {ceiling:,.0f} labels/s; {TARGET:,} labels/s needs "
          f"{TARGET * per_label / 1e9:,.1f} GFLOP/s = {TARGET / ceiling:.1f}x this CPU's peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
