"""Attribution-graph build time and peak memory against prompt length, beside circuit-tracer.

Both sides get the same model folder (the embedded SmolLM2, converted), the same
transcoder files (30 per-layer ReLU transcoders in circuit-tracer's layout; random
weights unless --set names a trained set folder in that layout), the same token ids,
``max_feature_nodes`` and batch size. Each graph is built in its own process, so each
peak RSS (``ru_maxrss``) is that side's alone; times are the attribution itself (model
and transcoders already loaded): featurelens's ``build_graph`` (forward pass, rows,
pruning, scores) against circuit-tracer's ``attribute`` (forward pass, rows; its pruning
not counted). Prints one line per length and the ratios measured in this run.

    .venv/bin/python benchmarks/graphs.py [--lengths 16,32,64,128] [--max-feature-nodes 500]
    (needs scripts/reference_circuit_tracer.sh for the circuit-tracer column)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("The capital of France is Paris, and the capital of Italy is Rome. Rivers run to the sea "
         "while mountains stand still; numbers like 7, 8 and 9 follow one another in order. ").split()


def prompt_ids(tokenizer, length: int) -> list[int]:
    """``length`` token ids: BOS, then the sample text repeated and cut."""
    ids: list[int] = []
    while len(ids) < length - 1:
        ids += tokenizer(" ".join(WORDS), add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id] + ids[:length - 1]


def ours(model_dir: str, set_dir: str, ids: list[int], max_feature_nodes: int, batch_size: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from featurelens.graphs import build_graph
    from featurelens.plugins.formats.transcoder_sets import CircuitTracerFormat

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    transcoders = CircuitTracerFormat().load(set_dir)
    start = time.perf_counter()
    graph = build_graph(model, tokenizer, transcoders, ids, max_feature_nodes=max_feature_nodes,
                        batch_size=batch_size, show_progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "active": len(graph.active), "selected": len(graph.selected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="16,32,64,128")
    parser.add_argument("--max-feature-nodes", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--d-transcoder", type=int, default=128)
    parser.add_argument("--set", default=None, help="a trained set in circuit-tracer's layout [default: random]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(ours(job["model"], job["set"], job["ids"], args.max_feature_nodes, args.batch_size)))
        return

    from transformers import AutoTokenizer

    from featurelens.core.model.embedded import embedded_model_path
    from featurelens.testing.graph_reference import (
        circuit_tracer_python, reference_model_folder, run_circuit_tracer, write_random_set,
    )

    source = embedded_model_path()
    work = Path(tempfile.mkdtemp(prefix="graphs-bench-"))
    set_dir = Path(args.set) if args.set else write_random_set(work / "set", n_layers=30, d_model=576,
                                                                d_transcoder=args.d_transcoder)
    ref_model = reference_model_folder(source, work / "model")
    tokenizer = AutoTokenizer.from_pretrained(source)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    print(f"SmolLM2-135M, 30 layers x {args.d_transcoder} {'trained' if args.set else 'random ReLU'} "
          f"transcoders, max_feature_nodes={args.max_feature_nodes}, batch {args.batch_size}, "
          f"{args.threads} threads")
    print(f"{'tokens':>6} {'active':>7} | {'featurelens s':>13} {'peak MB':>8} | {'circuit-tracer s':>16} "
          f"{'peak MB':>8} | {'time ratio':>10} {'memory ratio':>12}")
    for length in [int(x) for x in args.lengths.split(",")]:
        ids = prompt_ids(tokenizer, length)
        job = json.dumps({"model": str(source), "set": str(set_dir), "ids": ids})
        done = subprocess.run([sys.executable, __file__, "--worker", job, "--max-feature-nodes",
                               str(args.max_feature_nodes), "--batch-size", str(args.batch_size)],
                              env=env, capture_output=True, text=True, check=True)
        mine = json.loads(done.stdout.strip().splitlines()[-1])
        line = (f"{length:>6} {mine['active']:>7} | {mine['seconds']:>13.1f} {mine['peak_rss'] / 2**20:>8.0f} |")
        if circuit_tracer_python() is None:
            print(line + " (circuit-tracer not installed: scripts/reference_circuit_tracer.sh)")
            continue
        ref = run_circuit_tracer(ref_model, set_dir, ids, work / f"ref-{length}.safetensors",
                                 max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size,
                                 threads=args.threads, timeout=3600)
        ref_s, ref_rss = float(ref["attribution_seconds"][0]), int(ref["peak_rss_bytes"][0])
        print(line + f" {ref_s:>16.1f} {ref_rss / 2**20:>8.0f} | {ref_s / mine['seconds']:>9.2f}x "
                     f"{ref_rss / mine['peak_rss']:>11.2f}x", flush=True)
    print("time ratio = circuit-tracer seconds / featurelens seconds; memory ratio = circuit-tracer peak RSS / "
          "featurelens peak RSS (each process alone, model and transcoders included)")


if __name__ == "__main__":
    main()
