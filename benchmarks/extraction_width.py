"""Extraction's peak memory and time per phase as the dictionary widens.

Run: .venv/bin/python benchmarks/extraction_width.py --widths 262144 [--tokens 8192]

For each width, a random-weight TopK dictionary in SAELens's format (unit-norm decoder
rows, W_enc = W_dec transposed, zero biases, k active latents) is written once under
``--folder`` (streamed to disk in chunks, so making it costs no memory), then one child
process per width loads the embedded SmolLM2 and runs
``featurelens.core.extraction.extract`` with that dictionary's folder on
``blocks.3.hook_resid_post`` into a fresh store, as ``featurelens extract --dictionary
FOLDER`` does (extract loads the dictionary itself, and lets its weights go once the logit
effects are computed). A fresh process per width makes its peak RSS (``VmHWM``, weights
included) that width's alone. It prints, per phase, the wall time and the peak RSS
reached by the end of the phase:

- load: the model and the dictionary (the dictionary alone is ``2 x d_model x width``
  float32 weights: 4.8 GB at 1,048,576 latents);
- stream: corpus -> model -> dictionary -> accumulators (top windows, quantile
  reservoir, random pool, statistics), checkpoints included;
- logit effects: every feature's top and bottom tokens through the unembedding;
- write: feature rows and examples into the store, one transaction per 4,096 features
  (features/s is printed for it).

``--logit-sample`` loads the dictionary again after the extraction (outside every phase
above) to time the logit product on that many features.

Also printed: the accumulator state's own bytes at the end of the stream, and that
state's bytes per feature (what a wider dictionary adds), and the stream against its
limit at this width: once the stream ends (before the final phase, the dictionary still
loaded), the same batches of windows go through the truncated forward pass and the
dictionary's ``encode_sparse`` alone, nothing kept. ``limit / stream`` is printed by wall
time and by this process's CPU time (the stream's CPU time is counted from its first
batch to the final phase), so a busy machine shows in neither ratio alone.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HOOK = "blocks.3.hook_resid_post"
D_MODEL = 576  # SmolLM2-135M


def rss() -> tuple[float, float]:
    """(current, peak) resident memory of this process in GB, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024 / 1e9
    return fields["VmRSS"], fields["VmHWM"]


def make_dictionary(folder: Path, width: int, k: int, seed: int = 0) -> Path:
    """A random TopK dictionary in SAELens's format at ``folder/topk-WIDTH-kK`` (unit-norm
    decoder rows, W_enc = W_dec transposed, zero biases), written by :func:`write_saelens`."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def rows(start: int, count: int) -> tuple:
        dec = torch.randn(count, D_MODEL, generator=generator)
        dec /= dec.norm(dim=1, keepdim=True)
        return dec.numpy(), dec.T.numpy()

    return write_saelens(folder / f"topk-{width}-k{k}", width, k, rows)


def write_saelens(path: Path, width: int, k: int, rows: "Callable[[int, int], tuple]",
                  b_dec: "Any" = None, d_model: int = D_MODEL, hook: str = HOOK) -> Path:
    """A TopK dictionary in SAELens's format at ``path`` (``sae_weights.safetensors`` and
    ``cfg.json``), its weights written in chunks of features straight to the file (W_enc
    through a memory map, column block by column block), so it is never whole in memory.
    ``rows(start, count)`` gives chunk ``[start, start + count)`` as (W_dec rows
    ``[count, d_model]``, W_enc columns ``[d_model, count]``), float32 numpy arrays, asked
    for in order; ``b_dec`` (``[d_model]``) defaults to zeros, ``b_enc`` is zero. A folder
    whose weights file exists is returned as it is."""
    import numpy as np

    weights = path / "sae_weights.safetensors"
    if weights.is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    shapes = {"W_dec": [width, d_model], "W_enc": [d_model, width], "b_dec": [d_model], "b_enc": [width]}
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = weights.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    base = 8 + len(raw)
    step = 16384
    for start in range(0, width, step):
        dec, enc = rows(start, min(step, width - start))
        # mapped afresh per chunk, so the written pages leave this process's memory at once
        w_dec = np.memmap(tmp, dtype=np.float32, mode="r+", offset=base, shape=(width, d_model))
        w_enc = np.memmap(tmp, dtype=np.float32, mode="r+", offset=base + header["W_enc"]["data_offsets"][0],
                          shape=(d_model, width))
        w_dec[start:start + dec.shape[0]] = dec
        w_enc[:, start:start + dec.shape[0]] = enc
        w_dec.flush()
        w_enc.flush()
        del w_dec, w_enc
    if b_dec is not None:
        bias = np.memmap(tmp, dtype=np.float32, mode="r+", offset=base + header["b_dec"]["data_offsets"][0],
                         shape=(d_model,))
        bias[:] = np.asarray(b_dec, dtype=np.float32)
        bias.flush()
        del bias
    os.replace(tmp, weights)  # what was not written stays zero (the file was extended with zeros)
    (path / "cfg.json").write_text(json.dumps({
        "architecture": "topk", "d_in": d_model, "d_sae": width, "k": k, "dtype": "float32",
        "apply_b_dec_to_input": True, "hook_name": hook, "model_name": "smollm2",
    }))
    return path


def _two_topk(sae, lm, count: int, chunk: int = 256) -> None:
    """The previous rule, for comparison: 256 features at a time, two full top-k passes."""
    w_u = lm.unembedding(fold_final_norm=True)
    directions = sae.decoder_directions()
    for start in range(0, count, chunk):
        logits = directions[start:min(start + chunk, count)].float() @ w_u
        logits.topk(10, dim=1)
        logits.topk(10, dim=1, largest=False)


def child(dictionary: str, tokens: int, store: str, threads: int, logit_mode: str,
          sample_features: int) -> None:
    """One measured extraction; prints one JSON line."""
    import torch

    import featurelens.core.extraction.extractor as extractor
    from featurelens.core.dictionaries.loading import load_dictionary
    from featurelens.core.extraction import ExtractSpec
    from featurelens.core.host.manager import create

    if threads:
        torch.set_num_threads(threads)
    marks: dict[str, float] = {}
    peaks: dict[str, float] = {}
    start = time.perf_counter()
    lm = create("model_backend", "hf", "smollm2", dtype="float32", device="auto")
    real_finish, real_logits, real_load = extractor._finish, extractor.logit_effects, extractor.load_dictionary
    width: list[int] = []

    def load(*args, **kwargs):  # extract loads the dictionary itself, as `featurelens extract` does
        loaded = real_load(*args, **kwargs)
        marks["load"], peaks["load"] = time.perf_counter() - start, rss()[1]
        width.append(loaded.d_sae)
        return loaded

    state_bytes: list[int] = []
    fired: list[int] = []
    batches: list[list[list[int]]] = []  #: the token ids of every batch the stream folded in
    stream_cpu: list[float] = []
    limit: dict[str, float] = {}
    real_reduce = extractor.BatchReducer.__call__

    def reduce(self, state, batch):
        if not stream_cpu:
            stream_cpu.append(time.process_time())
        batches.append([w.tokens for w in batch])
        return real_reduce(self, state, batch)

    def finish(*args, **kwargs):  # the stream ends where the final phase begins
        stream_cpu[0] = time.process_time() - stream_cpu[0]
        state_bytes.append(args[10].nbytes())
        fired.append(int((args[10].stats.fire_count > 0).sum()))
        peaks["stream"] = rss()[1]
        limit["wall"], limit["cpu"] = limit_pass(args[4], args[5], batches)
        return real_finish(*args, **kwargs)

    def logits(*args, **kwargs):
        begun = time.perf_counter()
        out = real_logits(*args, **kwargs)
        marks["logit effects"], peaks["logit effects"] = time.perf_counter() - begun, rss()[1]
        return out

    extractor._finish, extractor.logit_effects, extractor.load_dictionary = finish, logits, load
    extractor.BatchReducer.__call__ = reduce
    spec = ExtractSpec(hookpoint=HOOK, model="smollm2", dictionary=dictionary, tokens=tokens, corpus="stdlib",
                       logit_effects=logit_mode)
    result = extractor.extract(spec, store=store, progress=False, model_obj=lm)
    marks["stream"] = result.stream_seconds
    marks.setdefault("logit effects", 0.0)  # --logit-effects none
    peaks.setdefault("logit effects", peaks["stream"])
    # the limit pass ran inside the final phase's clock, before the logit effects
    marks["write"] = result.finish_seconds - marks["logit effects"] - limit["wall"]
    peaks["write"] = rss()[1]
    sample = {}
    if sample_features:  # the product's cost per feature, and the two-top-k rule it replaced, same rows
        sae = load_dictionary(dictionary, backend=lm, hookpoint=HOOK)  # extract let its own copy go
        rows = torch.arange(min(sample_features, sae.d_sae))
        with torch.no_grad():
            begun = time.perf_counter()
            real_logits(sae, lm, features=rows)
            sample["blocks"] = (time.perf_counter() - begun) / rows.numel()
            begun = time.perf_counter()
            _two_topk(sae, lm, rows.numel())
            sample["two_topk"] = (time.perf_counter() - begun) / rows.numel()
    print(json.dumps({"width": width[0], "tokens": result.n_tokens, "fired": fired[0], "sample": sample, "seconds": marks, "peak_gb": peaks,
                      "state_bytes": state_bytes[0], "total_seconds": time.perf_counter() - start,
                      "stream_cpu": stream_cpu[0], "limit": limit, "load_average": os.getloadavg()}))


def limit_pass(lm, sae, batches: list[list[list[int]]]) -> tuple[float, float]:
    """(wall, CPU) seconds of the truncated forward pass + ``encode_sparse`` over ``batches``
    (as the extraction encodes: ``ENCODE_CHUNK`` rows at a time), nothing kept."""
    import torch

    from featurelens.core.extraction.state import encode

    wall, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for tokens in batches:
            ids = torch.tensor(tokens, dtype=torch.long, device=lm.device)
            encode(sae, lm.run(ids, [HOOK])[HOOK])
        if lm.device.type == "cuda":
            torch.cuda.synchronize(lm.device)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="65536,262144,1048576",
                        help="comma-separated dictionary widths, each run in its own process, one at a time")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--k", type=int, default=32, help="active latents per token")
    parser.add_argument("--logit-effects", choices=["auto", "all", "fired", "lazy", "none"], default="all",
                        help="extract's --logit-effects: which features get the decoder x unembedding product")
    parser.add_argument("--logit-sample", type=int, default=0,
                        help="after the extraction, time the logit-effects product on this many features, "
                             "and the two-full-top-k rule it replaced on the same ones (ms per feature)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "featurelens-width",
                        help="where the random dictionaries are kept between runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tokens, args.store, args.threads, args.logit_effects, args.logit_sample)
        return
    for width in (int(w) for w in args.widths.split(",")):
        made = time.perf_counter()
        dictionary = make_dictionary(args.folder, width, args.k)
        made = time.perf_counter() - made
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, "--child", str(dictionary), "--tokens", str(args.tokens),
                                  "--store", str(Path(tmp) / "width.duckdb"), "--threads", str(args.threads),
                                  "--logit-effects", args.logit_effects, "--logit-sample", str(args.logit_sample)],
                                 check=True, capture_output=True, text=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"width {row['width']:,} (TopK k={args.k}, SAELens format, {HOOK}), {row['tokens']:,} tokens, "
              f"logit effects of {args.logit_effects} features; "
              f"dictionary written in {made:.0f} s (0 if it was there)")
        for phase in ("load", "stream", "logit effects", "write"):
            print(f"  {phase:14s} {row['seconds'][phase]:8.1f} s   peak RSS so far {row['peak_gb'][phase]:6.2f} GB")
        print(f"  writing features and examples: {row['width'] / row['seconds']['write']:,.0f} features/s")
        print(f"  features that fired: {row['fired']:,} of {row['width']:,}")
        print(f"  accumulator state at the end of the stream: {row['state_bytes'] / 1e9:.3f} GB "
              f"= {row['state_bytes'] / row['width']:.0f} bytes per feature")
        limit, stream = row["limit"], row["seconds"]["stream"]
        print(f"  forward + encode limit on the same batches: {limit['wall']:.1f} s wall, {limit['cpu']:.1f} s CPU; "
              f"stream {stream:.1f} s wall, {row['stream_cpu']:.1f} s CPU; {row['tokens'] / stream:.1f} tokens/s")
        print(f"  stream / limit = {limit['wall'] / stream:.3f} by wall time, {limit['cpu'] / row['stream_cpu']:.3f} "
              f"by CPU time (load average at the end {row['load_average'][0]:.1f})")
        print(f"  peak RSS {max(row['peak_gb'].values()):.2f} GB, total {row['total_seconds']:.0f} s", flush=True)
        if row["sample"]:
            blocks, old = row["sample"]["blocks"], row["sample"]["two_topk"]
            print(f"  logit effects on {args.logit_sample:,} features: {blocks * 1e3:.3f} ms/feature "
                  f"(two full top-k, 256 at a time: {old * 1e3:.3f}; ratio {old / blocks:.2f}x); "
                  f"all {row['width']:,} features at this rate: {blocks * row['width'] / 60:.1f} min")


if __name__ == "__main__":
    main()
