"""What each stage of a sharded extraction costs, per shard, without Ray in the way.

Run: .venv/bin/python benchmarks/scale_stages.py [--tokens 16384] [--shard-batches 4] [--width 9216]

benchmarks/scale.py measures the whole pipeline; this script takes it apart. On one
thread, in this process, it runs the very objects a Ray worker and the driver run
(:class:`ShardReducer`, :func:`merge_bytes`, ``sequence_rows``) and times each stage:

- driver: packing the corpus into windows (tokenising), building sequence rows,
  merging each partial it receives;
- in-process loop: one warm state, batch after batch (the baseline a worker must match);
- worker, one fresh state per shard sent back whole (the old rule), and one state
  carried across shards, sent every ``--flush-every`` shards (the new rule): the
  batches, the partial's serialisation, its size on the wire.

Figures are totals over the run divided by the shards; "not model" is everything but the
forward pass and the encode (which the load of other processes moves the most). The worker's "not model" share beyond the in-process loop's
is what a 1-worker Ray run loses before Ray's own transport and the processes sharing
the cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scale import save_random_dictionary  # benchmarks/scale.py, beside this script

HOOK = "blocks.6.hook_resid_post"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--shard-batches", type=int, default=4, help="batches of 16 x 64 tokens per shard")
    parser.add_argument("--width", type=int, default=9216)
    parser.add_argument("--flush-every", type=int, default=4, help="carried shards per partial")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from featurelens.core.extraction import ExtractSpec
    from featurelens.core.extraction.extractor import prepare
    from featurelens.core.extraction.state import ExtractionState
    from featurelens.core.extraction.writer import TokenText, sequence_rows
    from featurelens.scale.extract_worker import ShardReducer
    from featurelens.scale.partial import merge_bytes

    with tempfile.TemporaryDirectory() as folder:
        dictionary = save_random_dictionary(Path(folder), args.width)
        spec = ExtractSpec(model="smollm2", hookpoint=HOOK, dictionary=dictionary, corpus="stdlib",
                           tokens=args.tokens, batch_size=16, context=64, device="cpu")
        plan = prepare(spec)
        start = time.perf_counter()
        batches = list(plan.batches)
        pack_s = time.perf_counter() - start
        worker_spec = {"model": spec.model, "backend": spec.backend, "dtype": spec.dtype, "device": "cpu",
                       "dictionary": dictionary, "dictionary_name": None, "hookpoint": HOOK,
                       "context": spec.context, "batch_size": spec.batch_size,
                       "specials": sorted(plan.reduce.specials), "exclude_outlier_norm": None,
                       "settings": asdict(plan.settings)}
        shards = [batches[i:i + args.shard_batches] for i in range(0, len(batches), args.shard_batches)]
        text = TokenText(plan.lm.tokenizer)

        # the in-process loop: one warm state
        state = ExtractionState(plan.sae.d_sae, spec.context, plan.settings, plan.lm.device)
        inproc, inproc_model = [], []
        for shard in shards:
            start, model = time.perf_counter(), 0.0
            for batch in shard:
                model += plan.reduce(state, batch)
            inproc.append(time.perf_counter() - start)
            inproc_model.append(model)
        rows_s = []
        for shard in shards:
            windows = [w for batch in shard for w in batch]
            start = time.perf_counter()
            sequence_rows(windows, plan.corpus_id, plan.lm.model_id, text)
            rows_s.append(time.perf_counter() - start)
        print(f"{len(shards)} shards of {args.shard_batches} batches (16 x 64 tokens), {args.width} latents, "
              f"one thread:")
        rest = sum(inproc) - sum(inproc_model)
        print(f"  in-process loop:     {1000 * sum(inproc) / len(shards):7.1f} ms per shard, of which not model "
              f"{1000 * rest / len(shards):6.1f} ms ({100 * rest / sum(inproc):.1f} %)")
        print(f"  driver, packing:     {1000 * pack_s / len(shards):7.1f} ms (tokenising the corpus into windows)")
        print(f"  driver, seq. rows:   {1000 * statistics.median(rows_s):7.1f} ms per shard (median; the first "
              f"decodes the vocabulary: {1000 * rows_s[0]:.0f} ms)")

        for label, carry in (("fresh state per shard", False), ("carried state", True)):
            reducer = ShardReducer(worker_spec, 1)
            driver = ExtractionState(plan.sae.d_sae, spec.context, plan.settings, plan.lm.device)
            reduce_s, model_s, flush_s, merge_s, sizes = [], [], [], [], []
            for index, shard in enumerate(shards):
                windows = [w for batch in shard for w in batch]
                tokens = np.asarray([w.tokens for w in windows], dtype=np.int64)
                seq_ids = np.asarray([w.sequence_id for w in windows], dtype=np.int64)
                start = time.perf_counter()
                data, model = reducer.reduce_shard(tokens, seq_ids, index, carry)
                reduce_s.append(time.perf_counter() - start)
                model_s.append(model)
                if carry and (index + 1) % args.flush_every == 0 or carry and index == len(shards) - 1:
                    start = time.perf_counter()
                    data, _ = reducer.flush()
                    flush_s.append(time.perf_counter() - start)
                if data is not None:
                    sizes.append(len(data))
                    start = time.perf_counter()
                    merge_bytes(driver, data)
                    merge_s.append(time.perf_counter() - start)
            worker = sum(reduce_s) + sum(flush_s)
            rest = worker - sum(model_s)
            print(f"  worker, {label}: {1000 * worker / len(shards):7.1f} ms per shard, of which not model "
                  f"{1000 * rest / len(shards):6.1f} ms ({100 * rest / worker:.1f} %); "
                  f"{statistics.fmean(sizes) / 2**20:5.2f} MiB per partial ({len(sizes)} sent"
                  f"{'' if not carry else f', one every {args.flush_every} shards'})")
            print(f"  driver, merging ({label}): {1000 * sum(merge_s) / len(shards):7.1f} ms per shard "
                  f"({100 * sum(merge_s) / sum(inproc):.1f} % of the in-process loop's time)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
