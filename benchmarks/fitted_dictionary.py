"""A wide TopK dictionary whose features fire evenly on the embedded SmolLM2, for benchmarks.

Run: PYTHONPATH=. .venv/bin/python benchmarks/fitted_dictionary.py --width 1048576 --k 128
     [--fit-tokens 8192] [--folder DIR] [--context 64]

Random unit-norm encoder directions fire few features on real activations: the residual
stream's mean direction and its outlier dimensions make the same features win every token
(15,261 of 1,048,576 fired at 4,032 tokens, k=32, BENCHMARKS.md). This dictionary is fitted
to the activations instead. From ``--fit-tokens`` tokens of the corpus's training documents
(extraction reads the held-out ones) at the hookpoint, special tokens left out, it takes
the mean ``m`` and the covariance ``S``; then

- ``b_dec = m`` (SAELens subtracts it from the input first);
- each encoder column is ``S^-1/2 u`` for a random unit direction ``u``, so the
  pre-activation of an activation ``x`` is ``u . S^-1/2 (x - m)``: a random direction of
  whitened (isotropic) data, and every feature is about as likely as any other to be among
  a token's ``k`` largest;
- each decoder row is ``S^1/2 u`` scaled to unit norm (the direction that undoes the
  whitening), and ``b_enc`` is zero.

Were tokens independent, with ``k`` active features per token, ``T`` tokens that count (a
window's BOS does not) and ``F`` features, the share of features that fire at least once
would be ``1 - exp(-k T / F)``. Real tokens are correlated (a file's indentation, repeated
names), so neighbouring tokens pick overlapping features and the share is lower: on the
held-out stdlib at 65,536 features, with the statistics of 8,000 training tokens, a
throwaway simulation of the encoder on held-out activations fired 0.70-0.77 of the features
at ``k T / F = 2.3`` (ideal 0.90) and 0.86-0.94 at ``k T / F = 4.6``, for k from 64 to 1,024
(statistics of 4,096 tokens, k=128: 0.71 at 2.3, 0.94 at 9.2); ``featurelens
extract`` of the 4,096-token fit, k=128, fired 46,503 of 65,536 (0.71) at 1,216 tokens, as
simulated, and 55,185 (0.84) at 2,432.
:func:`tokens_for` therefore asks for ``k T / F = FIRING_RATE``; the benchmark prints the
share that did fire. The file is written in SAELens's format by
``extraction_width.write_saelens`` (chunk by chunk, never whole in memory).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extraction_width import D_MODEL, HOOK, write_saelens  # noqa: E402

#: ``k T / F`` that fired about 90% of a fitted dictionary's features (measured, see above).
FIRING_RATE = 4.6
#: Eigenvalues of the covariance below this share of the largest are raised to it before
#: the inverse square root (directions the sample barely spans are not blown up).
EIGEN_FLOOR = 1e-6


def activation_sample(tokens: int, *, model: str = "smollm2", hookpoint: str = HOOK, corpus: str = "stdlib",
                      context: int = 64, batch_size: int = 16) -> torch.Tensor:
    """About ``tokens`` activations ``[n, d_model]`` (float64) at ``hookpoint``, read from the
    corpus's training documents in windows as extraction packs them, special tokens left out."""
    from featurelens.core.corpus.resolve import resolve_corpus
    from featurelens.core.corpus.split import split_corpus
    from featurelens.core.extraction.packing import pack, special_mask
    from featurelens.core.host.manager import create

    lm = create("model_backend", "hf", model, dtype="float32", device="cpu")
    source = split_corpus(resolve_corpus(corpus), "train")
    windows = list(pack(source, lm.tokenizer, context=context, prepend_bos=True,
                        max_windows=math.ceil(tokens / context)))
    specials = set(lm.tokenizer.all_special_ids)
    kept = []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            ids = torch.tensor([w.tokens for w in windows[start:start + batch_size]], dtype=torch.long)
            acts = lm.run(ids, [hookpoint])[hookpoint]
            kept.append(acts[~special_mask(ids, specials)].double())
    return torch.cat(kept)


def whitening(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, ``S^-1/2``, ``S^1/2``) of ``acts [n, d]``, ``S`` the covariance with its
    eigenvalues floored at ``EIGEN_FLOOR`` x the largest."""
    mean = acts.mean(dim=0)
    centred = acts - mean
    covariance = centred.T @ centred / max(1, acts.shape[0] - 1)
    values, vectors = torch.linalg.eigh(covariance)
    values = values.clamp_min(EIGEN_FLOOR * float(values.max()))
    return (mean, (vectors * values.rsqrt()) @ vectors.T, (vectors * values.sqrt()) @ vectors.T)


def tokens_for(width: int, k: int, context: int = 64, rate: float = FIRING_RATE) -> int:
    """Tokens (whole windows of ``context``, BOS not counting) with ``k T / F = rate``."""
    return math.ceil(width * rate / k / (context - 1)) * context


def independent_share(width: int, k: int, tokens: int, context: int = 64) -> float:
    """The share of ``width`` features that would fire over ``tokens`` (BOS not counting)
    were tokens independent: an upper bound on the share that does."""
    counted = math.ceil(tokens / context) * (context - 1)
    return 1.0 - math.exp(-k * counted / width)


def make_fitted_dictionary(folder: Path, width: int, k: int, *, fit_tokens: int = 8192, seed: int = 0,
                           model: str = "smollm2", hookpoint: str = HOOK, corpus: str = "stdlib") -> Path:
    """The fitted TopK dictionary at ``folder/topk-fitted-WIDTH-kK-fitT`` (made once; a folder
    holding its weights is returned as it is)."""
    path = folder / f"topk-fitted-{width}-k{k}-fit{fit_tokens}"
    if (path / "sae_weights.safetensors").is_file():
        return path
    acts = activation_sample(fit_tokens, model=model, hookpoint=hookpoint, corpus=corpus)
    if acts.shape[1] != D_MODEL:
        raise SystemExit(f"{hookpoint} of {model} is {acts.shape[1]} wide; this builder writes {D_MODEL}.")
    mean, whiten, colour = whitening(acts)
    whiten, colour = whiten.float(), colour.float()
    generator = torch.Generator().manual_seed(seed)

    def rows(start: int, count: int) -> tuple:
        u = torch.randn(count, D_MODEL, generator=generator)
        u /= u.norm(dim=1, keepdim=True)
        dec = u @ colour
        dec /= dec.norm(dim=1, keepdim=True)
        return dec.numpy(), (whiten @ u.T).contiguous().numpy()

    return write_saelens(path, width, k, rows, b_dec=mean.float().numpy(), hook=hookpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1 << 20)
    parser.add_argument("--k", type=int, default=128, help="active features per token")
    parser.add_argument("--fit-tokens", type=int, default=8192, help="corpus tokens the statistics come from")
    parser.add_argument("--context", type=int, default=64, help="the extraction's tokens per window")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "featurelens-fitted")
    args = parser.parse_args()
    made = time.perf_counter()
    path = make_fitted_dictionary(args.folder, args.width, args.k, fit_tokens=args.fit_tokens)
    print(f"dictionary {path} (made in {time.perf_counter() - made:.0f} s; 0 if it was there)")
    tokens = tokens_for(args.width, args.k, args.context)
    print(f"tokens {tokens} (k T / F = {FIRING_RATE}; independent tokens would fire "
          f"{independent_share(args.width, args.k, tokens, args.context):.3f})")


if __name__ == "__main__":
    main()
