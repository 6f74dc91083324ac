"""What steering and causal effects cost.

Run: .venv/bin/python benchmarks/steering.py [--tokens 64] [--repeats 3] [--extract-tokens 4096]
     [--effects-features 16] [--device auto]

On SmolLM2-135M (embedded) at blocks.6.hook_resid_post with a TopK dictionary of 9216
latents, k=32 (random weights: speed does not depend on them), in one process:

1. Generation: greedy ``model.generate`` of ``--tokens`` new tokens from the same prompt,
   unedited, with an ``add`` edit of one feature (steering), and with a ``clamp`` edit
   (which encodes every new token to read the feature). Best of ``--repeats``
   interleaved rounds after one warm-up round; prints tokens/s and edited / unedited
   (target: >= 0.9).
2. Effects: ``extract`` of ``--extract-tokens`` tokens, then ``compute_effects`` (8 top
   windows per feature) on ``--effects-features`` features; prints seconds per feature
   for both, and their ratio: what ``--effects`` adds per feature relative to extraction.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import featurelens
from featurelens.core.extraction import ExtractSpec, extract
from featurelens.core.host.manager import create
from featurelens.interventions.effects import compute_effects
from featurelens.interventions.generate import encode_prompt, generate_ids
from featurelens.interventions.targets import Target

HOOK = "blocks.6.hook_resid_post"
PROMPT = "The history of the city begins in the early"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_generation(backend, sae, edits, ids, tokens: int) -> float:
    _sync(backend.device)
    start = time.perf_counter()
    with featurelens.steering(backend, sae, edits):
        generate_ids(backend, ids, max_tokens=tokens, seed=0, temperature=0)
    _sync(backend.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extract-tokens", type=int, default=4096)
    parser.add_argument("--effects-features", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    backend = create("model_backend", "hf", "smollm2", dtype="float32", device=args.device)
    torch.manual_seed(0)
    sae = create("dictionary_learner", "topk", backend.d_model, 9216, k=32, hookpoint=HOOK,
                 model_id=backend.model_id).to(backend.device).eval()
    print(f"device {backend.device}, torch threads {torch.get_num_threads()}, model {backend.model_id}")

    ids = encode_prompt(backend, PROMPT)
    variants = {"unedited": {}, "add 123=+8": {123: 8.0}, "clamp 123=clamp:5": {123: ("clamp", 5.0)}}
    for edits in variants.values():  # warm-up: the first generations of a process are slow
        timed_generation(backend, sae, edits, ids, args.tokens)
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):
        for name, edits in variants.items():
            best[name] = min(best[name], timed_generation(backend, sae, edits, ids, args.tokens))
    print(f"\n1. greedy generation, {args.tokens} new tokens, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:<18} {args.tokens / seconds:8.1f} tokens/s")
    for name in list(variants)[1:]:
        print(f"  ratio {name} / unedited = {best['unedited'] / best[name]:.3f}")

    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "bench.duckdb"
        start = time.perf_counter()
        spec = ExtractSpec(model="smollm2", hookpoint=HOOK, dictionary="bench", corpus="stdlib",
                           tokens=args.extract_tokens)
        result = extract(spec, store=store, model_obj=backend, dictionary_obj=sae, progress=False)
        extract_seconds = time.perf_counter() - start
        with featurelens.open_store(store, read_only=True) as db:
            fired = db.sql(f"SELECT count(*) FROM features WHERE dictionary_id = '{result.dictionary_id}' "
                           "AND fire_count > 0").item()
        target = Target(backend, sae, result.dictionary_id, HOOK)
        effects = compute_effects(store, target, limit=args.effects_features, n_windows=8, progress=False)
    per_feature_extract = extract_seconds / max(fired, 1)
    per_feature_effects = effects.seconds / max(effects.measured, 1)
    print(f"\n2. effects vs extraction ({args.extract_tokens} tokens, {fired} features fired)")
    print(f"  extraction: {extract_seconds:.1f} s = {per_feature_extract * 1000:.1f} ms per fired feature")
    print(f"  effects:    {effects.seconds:.1f} s for {effects.measured} features = "
          f"{per_feature_effects * 1000:.1f} ms per feature (8 windows of 64 tokens, clean + ablated)")
    print(f"  ratio effects / extraction per feature = {per_feature_effects / per_feature_extract:.1f}")
    print(f"  projected --effects on every fired feature: {per_feature_effects * fired:.0f} s, "
          f"{per_feature_effects * fired / extract_seconds:.1f}x the extraction")


if __name__ == "__main__":
    main()
