"""Where a Ray extraction's stream spends its time, against the in-process loop, shard by shard.

Run: .venv/bin/python benchmarks/scale_timeline.py [--tokens 16384] [--width 9216] [--shard-batches 4] [--workers 1]

One in-process ``extract`` and one ``extract_on_ray`` (a local cluster, workers of one
thread) over the same tokens, in this process. Every batch of the in-process loop and
every call a worker answers (``reduce_shard``, ``flush``) is timed where it runs: wall
time and the CPU time of the thread doing it (which the load of other processes moves
much less than wall time); the driver's merges are timed too. It prints the worker's
timeline from the moment the driver was ready (prepare done), the gaps between a
worker's shards, the work after the last shard (flush, transfer, merge), and two ratios:

- worker thread CPU per shard / in-process thread CPU per shard (the same batches;
  1.0 means a worker does no more per batch than the in-process loop);
- the Ray stream's wall time outside the workers' shards, as a share of the stream.

Figures are for one run each; rerun to see the spread on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from scale import (  # benchmarks/scale.py, beside this script
    HOOK,
    _load,
    save_random_dictionary,
)

LOG_ENV = "FEATURELENS_TIMELINE_LOG"


def _log(**event: object) -> None:
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")


def timed_reducer_class() -> type:
    """ShardReducer whose calls append (wall start/end, thread CPU) to the log file."""
    from featurelens.scale.extract_worker import ShardReducer

    class TimedReducer(ShardReducer):
        def __init__(self, spec: dict, threads: int):
            _log(event="init start", t=time.time(), pid=os.getpid())
            super().__init__(spec, threads)
            _log(event="init end", t=time.time(), pid=os.getpid())

        def reduce_shard(self, tokens, seq_ids, index=-1, carry=False):  # type: ignore[no-untyped-def]
            start, cpu = time.time(), time.thread_time()
            result = super().reduce_shard(tokens, seq_ids, index, carry)
            _log(event="shard", index=index, t0=start, t1=time.time(), cpu=time.thread_time() - cpu,
                 model=result[1], pid=os.getpid())
            return result

        def flush(self):  # type: ignore[no-untyped-def]
            start, cpu = time.time(), time.thread_time()
            data, held = super().flush()
            _log(event="flush", t0=start, t1=time.time(), cpu=time.thread_time() - cpu, mib=len(data) / 2**20,
                 pid=os.getpid())
            return data, held

    return TimedReducer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--width", type=int, default=9216)
    parser.add_argument("--shard-batches", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from featurelens.core.extraction import ExtractSpec, extract
    from featurelens.core.extraction.extractor import BatchReducer
    from featurelens.scale import extraction, worker_pool

    with tempfile.TemporaryDirectory() as folder:
        os.environ[LOG_ENV] = str(Path(folder) / "timeline.jsonl")  # Ray workers inherit it
        dictionary = save_random_dictionary(Path(folder), args.width)
        spec = ExtractSpec(model="smollm2", hookpoint=HOOK, dictionary=dictionary, corpus="stdlib",
                           tokens=args.tokens, batch_size=16, context=64, device="cpu")
        print(f"load average at start: {_load()}")

        # in-process: every batch timed in the loop's own thread
        batches: list[tuple[float, float]] = []
        real_call = BatchReducer.__call__

        def timed_call(self, state, batch):  # type: ignore[no-untyped-def]
            start, cpu = time.perf_counter(), time.thread_time()
            seconds = real_call(self, state, batch)
            batches.append((time.perf_counter() - start, time.thread_time() - cpu))
            return seconds

        BatchReducer.__call__ = timed_call  # type: ignore[method-assign]
        inproc = extract(spec, store=Path(folder) / "in.duckdb", progress=False, checkpoint_seconds=1e9)
        BatchReducer.__call__ = real_call  # type: ignore[method-assign]
        per_shard = [batches[i:i + args.shard_batches] for i in range(0, len(batches), args.shard_batches)]
        in_wall = [sum(w for w, _ in shard) for shard in per_shard]
        in_cpu = [sum(c for _, c in shard) for shard in per_shard]
        print(f"in-process: stream {inproc.stream_seconds:.2f} s; per shard of {args.shard_batches} batches: "
              f"wall {_fmt(in_wall)} s, thread CPU {_fmt(in_cpu)} s; outside the batches "
              f"{inproc.stream_seconds - sum(in_wall):.2f} s | load {_load()}")

        # Ray: the same tokens, workers timed where they run, merges timed in the driver
        worker_pool.ShardReducer = timed_reducer_class()
        real_merge = extraction.merge_partial

        def timed_merge(into, data):  # type: ignore[no-untyped-def]
            start = time.time()
            real_merge(into, data)
            _log(event="merge", t0=start, t1=time.time(), pid=os.getpid())

        extraction.merge_partial = timed_merge
        real_dispatch = extraction._dispatch

        def timed_dispatch(*args, **kwargs):  # type: ignore[no-untyped-def]
            _log(event="stream", t=time.time(), pid=os.getpid())  # the driver is ready: its stream starts
            return real_dispatch(*args, **kwargs)

        extraction._dispatch = timed_dispatch
        result = extraction.extract_on_ray(spec, store=Path(folder) / "ray.duckdb", workers=args.workers,
                                           threads=1, shard_batches=args.shard_batches, progress=False,
                                           checkpoint_seconds=1e9)
        returned = time.time()
        events = [json.loads(line) for line in Path(os.environ[LOG_ENV]).read_text().splitlines()]
        ready = next(e["t"] for e in events if e["event"] == "stream")
        stream_end = ready + result.stream_seconds
        print(f"ray x{args.workers}: prepare {result.prepare_seconds:.2f} s (Ray start {result.ray_start_seconds:.2f} s "
              f"beside it), then {result.startup_seconds:.2f} s waiting for workers, stream "
              f"{result.stream_seconds - result.startup_seconds:.2f} s, finish {result.finish_seconds:.2f} s, "
              f"returned {returned - stream_end - result.finish_seconds:.2f} s after the finish; Ray's shutdown "
              f"{result.ray_stop_seconds:.2f} s, beside the finish | load {_load()}")
        print("  timeline (s from the driver's stream start: prepare done, store opened):")
        for event in sorted(events, key=lambda e: e.get("t0", e.get("t", 0))):
            t0 = event.get("t0", event.get("t"))
            line = f"    {t0 - ready:7.2f}  {event['event']:<10} pid {event['pid']}"
            if "t1" in event:
                line += f"  wall {event['t1'] - event['t0']:.3f}"
            if "cpu" in event:
                line += f"  thread CPU {event['cpu']:.3f}"
            if "mib" in event:
                line += f"  {event['mib']:.1f} MiB"
            print(line)
        shards = [e for e in events if e["event"] == "shard"]
        gaps = []
        for pid in {e["pid"] for e in shards}:
            mine = sorted((e for e in shards if e["pid"] == pid), key=lambda e: e["t0"])
            gaps += [b["t0"] - a["t1"] for a, b in zip(mine, mine[1:])]
        last = max(e["t1"] for e in shards)
        after = stream_end - last
        busy = sum(e["t1"] - e["t0"] for e in shards) / args.workers
        stream = result.stream_seconds - result.startup_seconds
        print(f"  gaps between a worker's shards: median {1000 * statistics.median(gaps or [0]):.1f} ms, "
              f"max {1000 * max(gaps or [0]):.1f} ms; after the last shard to the stream's end {after:.2f} s")
        cpu_ratio = statistics.fmean(e["cpu"] for e in shards) / statistics.fmean(in_cpu)
        print(f"ratio worker thread CPU per shard / in-process = {cpu_ratio:.3f}")
        print(f"ratio Ray stream outside the workers' shards / stream = {max(0.0, stream - busy) / stream:.3f}")
        print(f"load average at end: {_load()}")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
