"""Sharded extraction on Ray against in-process, and what a merge costs.

Run: .venv/bin/python benchmarks/scale.py [--tokens 16384] [--memory-tokens 2048] [--width 9216] [--rounds 2]

On SmolLM2-135M (embedded) at blocks.6.hook_resid_post with a random TopK dictionary
(k=32; speed does not depend on the weights), each case runs in a fresh process:

- in-process: ``extract`` with one torch thread (the same CPU a 1-thread worker gets);
- ray x1: ``extract_on_ray`` with one worker of one thread, local cluster;
- ray x2: two workers of one thread each (2 cores);
- in-process and ray x2 at 4x the width (the state of four such dictionaries at once),
  over ``--memory-tokens`` only: these rows are for memory, and their finish phase
  (logit effects of 36,864 latents) is long.

The three speed cases run interleaved, ``--rounds`` times (in-process, x1, x2, in-process,
...), and each ratio is the median of the ratios within a round, so load from other
processes on a shared machine falls on the compared cases alike; the load average is
printed with every case.

It prints tokens/s of the streaming phase (model + dictionary + accumulators + merges
+ checkpoints, the part that scales; for Ray from the moment every worker has loaded
its model to the last partial merged, Ray's shutdown excluded: it overlaps the finish
phase) and end to end (which adds the driver's prepare, with Ray's start and the workers'
model loading beside it, and the finish phase: logit effects and the final writes, the
same in both), peak RSS of the driver and of each worker (VmHWM, polled),
and the time to deserialise and merge N partial states of one shard each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

HOOK = "blocks.6.hook_resid_post"


def _worker_peaks(stop: threading.Event, peaks: dict[int, int]) -> None:
    """Poll the peak RSS (VmHWM, KiB) of every ShardReducer process until ``stop``."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if not (entry / "cmdline").read_bytes().startswith(b"ray::ShardReducer"):
                    continue
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[int(entry.name)] = max(peaks.get(int(entry.name), 0), int(line.split()[1]))
            except OSError:
                continue
        stop.wait(0.2)


def run_case(case: str, tokens: int, dictionary: str, shard_batches: int) -> dict:
    """One configuration in this (fresh) process; returns its figures."""
    torch.set_num_threads(1)
    from featurelens.core.extraction import ExtractSpec

    spec = ExtractSpec(model="smollm2", hookpoint=HOOK, dictionary=dictionary, corpus="stdlib", tokens=tokens,
                       batch_size=16, context=64, device="cpu")
    run_options = dict(progress=False, checkpoint_seconds=1e9)
    peaks: dict[int, int] = {}
    stop = threading.Event()
    poller = threading.Thread(target=_worker_peaks, args=(stop, peaks), daemon=True)
    if case != "inprocess":  # in-process has no workers: no /proc scans sharing its GIL and core
        poller.start()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store.duckdb"
        if case == "inprocess":
            from featurelens.core.extraction import extract

            result = extract(spec, store=store, **run_options)
        else:
            from featurelens.scale import extract_on_ray

            result = extract_on_ray(spec, store=store, workers=int(case.split("x")[1]), threads=1,
                                    shard_batches=shard_batches, **run_options)
    stop.set()
    if poller.is_alive():
        poller.join()
    startup = getattr(result, "startup_seconds", 0.0)  # Ray: waiting for workers still loading the model
    return {"case": case, "tokens": result.n_tokens, "stream_tok_s": tokens / (result.stream_seconds - startup),
            "startup_s": startup, "prepare_s": getattr(result, "prepare_seconds", 0.0),
            "ray_start_s": getattr(result, "ray_start_seconds", 0.0),
            "end_to_end_tok_s": tokens / result.seconds, "seconds": result.seconds,
            "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_mib": sorted(round(v / 1024) for v in peaks.values())}


def merge_cost(width: int, n_partials: int) -> dict:
    """Deserialise and merge ``n_partials`` partial states, each one shard (2 batches of 16x64
    tokens, k=32 codes per token), as the driver does."""
    from featurelens.core.extraction.state import ExtractionState, Settings
    from featurelens.scale.partial import merge_bytes, to_bytes

    class Codes:
        def __init__(self, values: torch.Tensor, indices: torch.Tensor):
            self.values, self.indices = values, indices

    generator = torch.Generator().manual_seed(0)
    settings, context, cpu = Settings(), 64, torch.device("cpu")
    partials = []
    for shard in range(n_partials):
        state = ExtractionState(width, context, settings, cpu)
        for batch in range(2):
            rows = 16 * context
            values = torch.rand(rows, 32, generator=generator)
            indices = torch.randint(0, width, (rows, 32), generator=generator)
            seq = torch.arange(16) + (shard * 2 + batch) * 16
            state.accumulate([Codes(values, indices)], 16, context, seq, torch.zeros(16, context, dtype=torch.bool))
        partials.append(to_bytes(state))
    start = time.perf_counter()
    merged = ExtractionState(width, context, settings, cpu)
    for data in partials:
        merge_bytes(merged, data)  # what the driver does with each worker's bytes
    seconds = time.perf_counter() - start
    return {"width": width, "partials": n_partials, "seconds": seconds,
            "per_partial_ms": 1000 * seconds / n_partials,
            "partial_mib": sum(len(p) for p in partials) / n_partials / 2**20}


def save_random_dictionary(folder: Path, width: int) -> str:
    """A random TopK dictionary of ``width`` latents for SmolLM2's 576-wide stream (k=32)."""
    from featurelens.core.host.manager import create
    from featurelens.core.training.api import save_dictionary

    torch.manual_seed(0)
    output = folder / f"topk-{width}"
    save_dictionary(create("dictionary_learner", "topk", 576, width, k=32), output)
    return str(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--memory-tokens", type=int, default=2048)
    parser.add_argument("--shard-batches", type=int, default=4, help="batches of 16 x 64 tokens per shard")
    parser.add_argument("--width", type=int, default=9216)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three speed cases")
    parser.add_argument("--merge-only", action="store_true", help="print only the merge figures")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--dictionary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.tokens, args.dictionary, args.shard_batches)))
        return
    if args.merge_only:
        _print_merges(args.width)
        return
    print(f"load average at start: {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        one = save_random_dictionary(Path(folder), args.width)
        four = save_random_dictionary(Path(folder), 4 * args.width)
        speed = (("in-process", "inprocess"), ("ray x1", "rayx1"), ("ray x2", "rayx2"))
        runs: dict[str, list[dict]] = {label: [] for label, _ in speed}
        # interleaved: each round runs every case once, so a change in the machine's load
        # (other people's jobs) falls on all cases alike; ratios are taken within a round
        for _ in range(args.rounds):
            for label, case in speed:
                runs[label].append(_run(label, case, one, args.tokens, args.shard_batches))
        for label, case, dictionary, tokens in (("in-process 4x", "inprocess", four, args.memory_tokens),
                                                ("ray x2 4x", "rayx2", four, args.memory_tokens)):
            _run(label, case, dictionary, tokens, args.shard_batches)
    for name, key in (("stream", "stream_tok_s"), ("end to end", "end_to_end_tok_s")):
        x1 = [r1[key] / r0[key] for r0, r1 in zip(runs["in-process"], runs["ray x1"], strict=True)]
        x2 = [r2[key] / r1[key] for r1, r2 in zip(runs["ray x1"], runs["ray x2"], strict=True)]
        print(f"{name:>10}: ray x1 / in-process {statistics.median(x1):.3f} (rounds {_fmt(x1)}, target >= 0.9); "
              f"ray x2 / ray x1 {statistics.median(x2):.3f} (rounds {_fmt(x2)}, target >= 1.7)")
    print(f"load average at end: {_load()}", flush=True)
    _print_merges(args.width)


def _run(label: str, case: str, dictionary: str, tokens: int, shard_batches: int) -> dict:
    """One case in a fresh process; prints and returns its figures."""
    done = subprocess.run([sys.executable, __file__, "--case", case, "--tokens", str(tokens),
                           "--dictionary", dictionary, "--shard-batches", str(shard_batches)],
                          capture_output=True, text=True, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{label:>14} ({tokens} tokens): stream {r['stream_tok_s']:7.1f} tok/s, end to end {r['end_to_end_tok_s']:7.1f} "
          f"tok/s ({r['seconds']:.1f} s{_start(r)}) | peak RSS driver "
          f"{r['driver_peak_mib']:.0f} MiB, workers {r['worker_peak_mib']} MiB | load {_load()}", flush=True)
    return r


def _start(r: dict) -> str:
    """Ray's start beside the driver's prepare, and what was left to wait for after it."""
    if not r["ray_start_s"]:
        return ""
    return (f"; prepare {r['prepare_s']:.1f} s, Ray start {r['ray_start_s']:.1f} s beside it, then "
            f"{r['startup_s']:.1f} s waiting for workers")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _print_merges(width: int) -> None:
    for latents in (width, 4 * width):
        m = merge_cost(latents, 16)
        print(f"merge {m['partials']} partial states of {latents} latents: {m['seconds']:.2f} s, "
              f"{m['per_partial_ms']:.1f} ms each, {m['partial_mib']:.1f} MiB each on the wire", flush=True)

if __name__ == "__main__":
    main()
