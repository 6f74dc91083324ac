"""Data-parallel training throughput: 1 process against N gloo workers, same global batch.

Each configuration trains twice, on a short and a long token budget, and the rate is
the extra tokens over the extra seconds: process start-up, imports and the first
buffer fill cancel out, leaving the steady step rate. Prints tokens/s per setting and
the ratio of N workers (1 torch thread each) to one process with N threads, which is
the comparison that matters on one machine (same cores, split differently).

    python benchmarks/train_data_parallel.py [--workers 2] [--d-sae 4096] [--batch 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from featurelens.core.training import TensorSource, TrainConfig, run_training
from featurelens.core.training.data_parallel import DataParallelRunner


def timed(runner, config: TrainConfig, data: torch.Tensor) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        runner(TensorSource(data, chunk_rows=4096), config, checkpoint_dir=Path(folder) / "ckpt",
               progress=False, checkpoint_steps=10**9)
        return time.perf_counter() - start


def rate(runner, base: TrainConfig, data: torch.Tensor, short_steps: int, long_steps: int) -> float:
    seconds = []
    for steps in (short_steps, long_steps):
        config = TrainConfig(**{**base.__dict__, "tokens": steps * base.batch_size})
        seconds.append(timed(runner, config, data))
    return (long_steps - short_steps) * base.batch_size / max(seconds[1] - seconds[0], 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--d-in", type=int, default=128)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--short-steps", type=int, default=5)
    parser.add_argument("--long-steps", type=int, default=25)
    args = parser.parse_args()

    data = torch.randn(16 * args.batch, args.d_in, generator=torch.Generator().manual_seed(0))
    base = TrainConfig(architecture="topk", d_sae=args.d_sae, options={"k": args.k}, batch_size=args.batch,
                       buffer_rows=4 * args.batch, seed=0)

    def in_process(threads: int):
        def run(*a, **kw):
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return run_training(*a, **kw)
            finally:
                torch.set_num_threads(before)
        return run

    print(f"topk d_in={args.d_in} d_sae={args.d_sae} k={args.k} global batch {args.batch}; "
          f"steady rate from {args.short_steps} vs {args.long_steps} steps; {torch.get_num_threads()} cores seen")
    one_thread = rate(in_process(1), base, data, args.short_steps, args.long_steps)
    print(f"  in-process, 1 thread             : {one_thread:12,.0f} tok/s")
    n_threads = rate(in_process(args.workers), base, data, args.short_steps, args.long_steps)
    print(f"  in-process, {args.workers} threads            : {n_threads:12,.0f} tok/s")
    parallel = rate(DataParallelRunner(args.workers, "processes", threads=1), base, data,
                    args.short_steps, args.long_steps)
    print(f"  {args.workers} gloo workers x 1 thread       : {parallel:12,.0f} tok/s")
    print(f"  ratio {args.workers} workers / in-process 1 thread  = {parallel / one_thread:.2f}")
    print(f"  ratio {args.workers} workers / in-process {args.workers} threads = {parallel / n_threads:.2f}")


if __name__ == "__main__":
    main()
