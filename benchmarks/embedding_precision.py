"""The sentence model in lower precision on this CPU: how much faster, and how far its
vectors move from float32's, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/embedding_precision.py [--texts 2048]

The texts are token-lookup-shaped labels (a quoted token, then the share of activation
mass and of occurrences), the texts the explanation-search fill embeds one a feature. Each
variant embeds all of them with the shipped ``embed()`` (token-length batches of 128), best
of two passes: float32 (shipped), the same model with its Linear layers dynamically
quantized to int8 (``torch.ao.quantization.quantize_dynamic``), and bfloat16 weights. It
prints texts a second, the speed ratio against float32, and the lowest and median cosine of
each variant's vector with float32's: a variant that moves vectors changes every score
computed from them.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import featurelens.core.model.sentence_embedding as sentence_embedding


def best_of_two(texts: list[str], path: str) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        out = sentence_embedding.embed(texts, path, batch_size=128, device="cpu")
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    texts = [f'" tok{i}" — {i % 100}% of top activation mass, fires on {(7 * i) % 100}% of its occurrences'
             for i in range(args.texts)]
    path = str(sentence_embedding.default_model_path())
    tokenizer, model = sentence_embedding._load(path, "cpu")
    seconds, reference = best_of_two(texts, path)
    print(f"float32 (shipped): {len(texts) / seconds:,.0f} texts/s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic's deprecation notice
        variants = {"int8 dynamic": torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                                            dtype=torch.qint8),
                    "bfloat16": copy.deepcopy(model).to(torch.bfloat16)}
    original = sentence_embedding._load
    try:
        for name, variant in variants.items():
            sentence_embedding._load = lambda path, device, variant=variant: (tokenizer, variant)
            took, vectors = best_of_two(texts, path)
            cosines = (vectors * reference).sum(-1)
            print(f"{name}: {len(texts) / took:,.0f} texts/s = {seconds / took:.2f}x float32; cosine with float32 "
                  f"lowest {float(cosines.min()):.4f}, median {float(cosines.median()):.4f}")
    finally:
        sentence_embedding._load = original
    return 0


if __name__ == "__main__":
    sys.exit(main())
