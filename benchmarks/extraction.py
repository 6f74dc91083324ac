"""Extraction throughput against its physical limit, and what stopping early saves.

Run: .venv/bin/python benchmarks/extraction.py [--tokens 16384] [--device auto]

On SmolLM2-135M (embedded) at blocks.6.hook_resid_post with a TopK dictionary of
9216 latents, k=32 (random weights: speed does not depend on them), it measures on the
same windows, in the same process:

- limit: the truncated forward pass plus ``encode_sparse`` alone, nothing kept;
- extraction: ``featurelens.core.extraction.extract`` end to end (corpus packing, all
  accumulators, checkpoints, the store writes), model and dictionary already loaded;
- full: the whole model (30 layers and the LM head) on the same batches;
- truncated layer list: the other way to stop early, running only layers 0-6.

Each timing is the best of ``--repeats`` interleaved rounds, since other processes
share the machine. Prints tokens/s and the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from featurelens.core.extraction import ExtractSpec, extract
from featurelens.core.extraction.packing import pack
from featurelens.core.host.manager import create
from featurelens.plugins.corpus_sources import StdlibCorpus
from featurelens.plugins.hf_backend import HFBackend

HOOK = "blocks.6.hook_resid_post"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def limit_pass(backend: HFBackend, sae, batches: list[torch.Tensor]) -> float:
    """Seconds for the truncated forward pass + encode_sparse over ``batches``."""
    _sync(backend.device)
    start = time.perf_counter()
    with torch.no_grad():
        for ids in batches:
            acts = backend.run(ids, [HOOK])[HOOK]
            sae.encode_sparse(acts.reshape(-1, acts.shape[-1]))
    _sync(backend.device)
    return time.perf_counter() - start


def full_pass(backend: HFBackend, batches: list[torch.Tensor]) -> float:
    _sync(backend.device)
    start = time.perf_counter()
    for ids in batches:
        backend.run_full(ids)
    _sync(backend.device)
    return time.perf_counter() - start


def truncated_layers_pass(backend: HFBackend, batches: list[torch.Tensor]) -> float:
    """Stop early by running a shortened layer list instead of raising from a hook."""
    base = backend.model.model
    layers, n = base.layers, base.config.num_hidden_layers
    base.layers = torch.nn.ModuleList(list(layers)[:7])
    base.config.num_hidden_layers = 7
    try:
        _sync(backend.device)
        start = time.perf_counter()
        with torch.no_grad():
            for ids in batches:
                base(input_ids=ids.to(backend.device), use_cache=False)
        _sync(backend.device)
        return time.perf_counter() - start
    finally:
        base.layers, base.config.num_hidden_layers = layers, n


def extraction_pass(backend: HFBackend, sae, tokens: int, batch_size: int, folder: Path,
                    round_: int) -> tuple[float, float, float, float]:
    """(end-to-end, streaming, final phase, model+encode within streaming) seconds of one
    extraction into a new store."""
    store = folder / f"bench-{round_}.duckdb"
    _sync(backend.device)
    start = time.perf_counter()
    spec = ExtractSpec(hookpoint=HOOK, corpus="stdlib", tokens=tokens, batch_size=batch_size, context=64)
    result = extract(spec, store=store, progress=False, model_obj=backend, dictionary_obj=sae)
    _sync(backend.device)
    return (time.perf_counter() - start, result.stream_seconds, result.finish_seconds,
            result.model_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--full-tokens", type=int, default=4096, help="tokens for the whole-model timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    backend = HFBackend("smollm2", device=args.device)
    torch.manual_seed(0)
    sae = create("dictionary_learner", "topk", backend.d_model, 9216, k=32).to(backend.device).eval()
    windows = list(pack(StdlibCorpus(), backend.tokenizer, context=64, max_windows=args.tokens // 64))
    batches = [torch.tensor([w.tokens for w in windows[i:i + args.batch_size]], device=backend.device)
               for i in range(0, len(windows), args.batch_size)]
    n_full = max(1, args.full_tokens // (64 * args.batch_size))
    n_tokens = len(windows) * 64
    limit_pass(backend, sae, batches[:2])  # warm-up
    limits, extractions, fulls, cuts, stops = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            limits.append(limit_pass(backend, sae, batches))
            extractions.append(extraction_pass(backend, sae, n_tokens, args.batch_size, Path(tmp), round_))
            fulls.append(full_pass(backend, batches[:n_full]))
            stops.append(_stop_pass(backend, batches[:n_full]))
            cuts.append(truncated_layers_pass(backend, batches[:n_full]))
    limit = min(limits)
    extraction, stream, finish, inside = min(extractions)
    full, stop, cut = min(fulls), min(stops), min(cuts)
    print(f"device: {backend.device}, threads: {torch.get_num_threads()}, tokens: {n_tokens}, "
          f"batch: {args.batch_size} x 64, dictionary: topk 9216 k=32, hookpoint: {HOOK}")
    print(f"limit (truncated forward + encode): {n_tokens / limit:9.1f} tokens/s")
    print(f"extraction streaming phase (model, dictionary, accumulators, checkpoints): "
          f"{n_tokens / stream:9.1f} tokens/s")
    print(f"streaming / limit = {limit / stream:.3f}   (goal >= 0.90)")
    print(f"  of which forward + encode inside the extraction: {inside:.1f} s of {stream:.1f} s "
          f"= {inside / stream:.3f} (bookkeeping share {1 - inside / stream:.3f})")
    for i, (limit_i, (_, stream_i, _, _)) in enumerate(zip(limits, extractions, strict=True)):
        print(f"  round {i}: limit {n_tokens / limit_i:.1f} tok/s, streaming {n_tokens / stream_i:.1f} tok/s")
    print(f"final phase, once per dictionary (logit effects over the vocabulary, store writes): "
          f"{finish:.1f} s")
    print(f"end to end (process startup and model loading excluded): {n_tokens / extraction:9.1f} tokens/s"
          f" = {limit / extraction:.3f} of the limit at {n_tokens} tokens")
    print(f"forward stopped at layer 6 by hook: {stop:.2f} s; whole model: {full:.2f} s; "
          f"speed-up = {full / stop:.2f}x")
    print(f"truncated layer list instead of hook: {cut:.2f} s (hook / truncated = {stop / cut:.3f})")


def _stop_pass(backend: HFBackend, batches: list[torch.Tensor]) -> float:
    _sync(backend.device)
    start = time.perf_counter()
    for ids in batches:
        backend.run(ids, [HOOK])
    _sync(backend.device)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
