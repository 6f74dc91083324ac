"""Training throughput of the TopK SAE, against the matrix-multiply limit and a bare
dense PyTorch TopK step, measured in the same run.

    python benchmarks/training.py [--batch 4096] [--steps 3] [--expansions 16 64] [--device auto]

For each expansion (d_in = 576, SmolLM2-135M's width; k = 32) it times, interleaved so
that both see the same machine load:

- ``ours``: :func:`featurelens.core.training.trainer.train_step` on the built-in
  ``topk`` learner (sparse-aware encoder gradient and decoder, AuxK, unit-norm upkeep,
  gradient clipping, Adam): exactly what ``featurelens train`` runs per batch;
- ``ours_auxk``: the same with 10% of features dead, so the AuxK loss runs too;
- ``dense``: a bare dense PyTorch TopK step (encoder matmul, topk, scatter to a dense
  ``[n, d_sae]`` code, dense decoder matmul, MSE, backward, Adam), the baseline that
  SAELens's step reaches 0.62 of;
- ``matmul``: the one product no TopK step can avoid, ``x @ W_enc``; ``batch / time``
  is the matrix-multiply limit in tokens/s.

Peak memory is each variant's peak resident set (``VmHWM``, CPU) or peak allocated
memory (GPU), measured in a fresh child process (``ru_maxrss`` would inherit the
parent's peak across ``exec``). Ratios are medians over ``--steps`` interleaved
repetitions after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

D_IN = 576
K = 32


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _setup(variant: str, expansion: int, batch: int, device):
    """Build one variant; return a zero-argument function that runs one step."""
    import torch

    torch.manual_seed(0)
    d_sae = D_IN * expansion
    x = torch.randn(batch, D_IN, device=device)
    if variant in ("ours", "ours_auxk"):
        from featurelens.core.host.manager import create
        from featurelens.core.training.trainer import make_adam, train_step

        model = create("dictionary_learner", "topk", D_IN, d_sae, k=K).to(device)
        model.initialize_from_data(x)
        optimizer = make_adam(list(model.parameters()), 1e-4)
        dead = torch.zeros(d_sae, dtype=torch.bool, device=device)
        if variant == "ours_auxk":
            dead[: d_sae // 10] = True  # AuxK on 10% dead features: the extra work of a real run
        autocast = torch.autocast(device_type=device.type, enabled=False)
        return lambda: train_step(model, optimizer, x, None, dead, autocast)
    if variant == "dense":
        w_enc = (torch.randn(D_IN, d_sae, device=device) / D_IN**0.5).requires_grad_()
        b_enc = torch.zeros(d_sae, device=device, requires_grad=True)
        w_dec = (torch.randn(d_sae, D_IN, device=device) / D_IN**0.5).requires_grad_()
        b_dec = torch.zeros(D_IN, device=device, requires_grad=True)
        from featurelens.core.training.trainer import make_adam

        optimizer = make_adam([w_enc, b_enc, w_dec, b_dec], 1e-4)  # same fused Adam as ours

        def dense_step() -> None:
            hidden = (x - b_dec) @ w_enc + b_enc
            values, indices = hidden.topk(K, dim=-1)
            codes = torch.zeros_like(hidden).scatter(-1, indices, torch.relu(values))
            loss = (codes @ w_dec + b_dec - x).pow(2).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return dense_step
    if variant == "matmul":
        w_enc = torch.randn(D_IN, d_sae, device=device)
        return lambda: x @ w_enc
    raise ValueError(variant)


def _peak_memory(variant: str, expansion: int, batch: int, device_name: str) -> float:
    """Peak memory (MiB) of two steps of ``variant`` in a fresh process."""
    code = (
        "import json, re, sys, torch; sys.path.insert(0, 'benchmarks');"
        "from training import _setup;"
        f"d = torch.device({device_name!r}); step = _setup({variant!r}, {expansion}, {batch}, d);"
        "step(); step();"
        "peak = torch.cuda.max_memory_allocated() / 2**20 if d.type == 'cuda' else "
        "int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024;"
        "print(json.dumps(peak))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(expansion: int, batch: int, steps: int, device) -> dict[str, float]:
    variants = ("ours", "ours_auxk", "dense", "matmul")
    runs = {v: _setup(v, expansion, batch, device) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for v in variants:  # warm-up (allocations, first-call costs)
        runs[v]()
    _sync(device)
    for _ in range(steps):
        for v in variants:
            start = time.perf_counter()
            runs[v]()
            _sync(device)
            times[v].append(time.perf_counter() - start)
    median = {v: statistics.median(t) for v, t in times.items()}
    tps = {v: batch / median[v] for v in variants}
    return {
        "expansion": expansion, "d_sae": D_IN * expansion, "batch": batch,
        "ours_tokens_per_s": tps["ours"], "dense_tokens_per_s": tps["dense"],
        "matmul_limit_tokens_per_s": tps["matmul"],
        "ours_over_matmul_limit": tps["ours"] / tps["matmul"],
        "ours_over_dense": tps["ours"] / tps["dense"],
        "ours_over_saelens_estimate": tps["ours"] / (0.62 * tps["dense"]),
        "ours_auxk_tokens_per_s": tps["ours_auxk"],
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--expansions", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-memory", action="store_true", help="Skip the peak-memory child processes.")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    print(f"device={device} threads={torch.get_num_threads()} d_in={D_IN} k={K} batch={args.batch}")
    results = []
    for expansion in args.expansions:
        row = measure(expansion, args.batch, args.steps, device)
        if not args.no_memory:
            for v in ("ours", "dense"):
                row[f"{v}_peak_mib"] = _peak_memory(v, expansion, args.batch, str(device))
        results.append(row)
        print(f"{expansion}x ({row['d_sae']} latents): ours {row['ours_tokens_per_s']:,.0f} tok/s, "
              f"dense TopK {row['dense_tokens_per_s']:,.0f} tok/s, matmul limit "
              f"{row['matmul_limit_tokens_per_s']:,.0f} tok/s | ours/limit {row['ours_over_matmul_limit']:.2f}, "
              f"ours/dense {row['ours_over_dense']:.2f} (vs SAELens ~0.62 of dense: "
              f"{row['ours_over_saelens_estimate']:.2f}x); with AuxK on 10% dead "
              f"{row['ours_auxk_tokens_per_s']:,.0f} tok/s"
              + (f" | peak memory ours {row['ours_peak_mib']:,.0f} MiB, dense {row['dense_peak_mib']:,.0f} MiB"
                 if "ours_peak_mib" in row else ""), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
