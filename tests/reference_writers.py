"""Checkpoints written by the real sparsify and sae_lens packages, with their own codes.

Run in the reference environment (``scripts/reference_libs.sh`` installs the two
libraries into ``.reference-libs/``, apart from featurelens's own environment):
``python tests/reference_writers.py OUT``. It writes, under ``OUT``:

- ``sparsify/`` a root with two hookpoints (``layers.5``, ``layers.6``) saved by
  ``SparseCoder.save_to_disk`` in bfloat16, as sparsify's trainer lays them out;
- ``saelens-<arch>/`` for standard, topk and jumprelu SAEs saved by ``SAE.save_model``;
- ``codes.safetensors``: the inputs and each library's own ``encode`` of them.

Weights are random but at real scale (biases non-zero, so their rounding matters).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

D_IN, N, K, ROWS = 64, 512, 16, 256


def sparsify_root(out: Path, x: torch.Tensor, codes: dict[str, torch.Tensor]) -> None:
    from sparsify import SparseCoder, SparseCoderConfig

    for layer in (5, 6):
        torch.manual_seed(layer)
        coder = SparseCoder(D_IN, SparseCoderConfig(k=K, num_latents=N), dtype=torch.bfloat16)
        with torch.no_grad():
            coder.encoder.bias.normal_(0, 0.5)
            coder.b_dec.normal_(0, 1.0)
        coder.save_to_disk(out / "sparsify" / f"layers.{layer}")
        top = coder.encode(x.to(torch.bfloat16))
        codes[f"sparsify.layers.{layer}.values"] = top.top_acts.float()
        codes[f"sparsify.layers.{layer}.indices"] = top.top_indices.long()


def saelens_saes(out: Path, x: torch.Tensor, codes: dict[str, torch.Tensor]) -> None:
    import sae_lens

    kinds = {"standard": ("StandardSAE", "StandardSAEConfig", {}),
             "topk": ("TopKSAE", "TopKSAEConfig", {"k": K}),
             "jumprelu": ("JumpReLUSAE", "JumpReLUSAEConfig", {})}
    for name, (cls, cfg_cls, extra) in kinds.items():
        torch.manual_seed(len(name))
        sae = getattr(sae_lens, cls)(getattr(sae_lens, cfg_cls)(d_in=D_IN, d_sae=N, dtype="float32",
                                                              device="cpu", **extra))
        with torch.no_grad():
            for p in sae.parameters():
                p.normal_(0, 0.3)
            if hasattr(sae, "threshold"):
                sae.threshold.uniform_(0.0, 0.5)
        sae.save_model(str(out / f"saelens-{name}"))
        with torch.no_grad():
            codes[f"saelens.{name}"] = sae.encode(x).float()


def main(out: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(ROWS, D_IN) * 3
    codes: dict[str, torch.Tensor] = {"x": x}
    sparsify_root(out, x, codes)
    saelens_saes(out, x, codes)
    save_file({k: v.contiguous() for k, v in codes.items()}, str(out / "codes.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
