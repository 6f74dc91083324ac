"""Transcoders: read the MLP's input, predict the MLP's output (Dunefsky et al. 2024).

A transcoder is an encoder/decoder pair whose target is another activation, with an
optional learned linear skip path ``W_skip [d_out, d_in]`` (Paulo et al. 2025) that
carries the part of the MLP that is close to linear. Its features may use any of the
sparse activations; TopK by default, as in sparsify.
"""

from __future__ import annotations

from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.batchtopk import BatchTopKSAE
from featurelens.plugins.dictionaries.jumprelu import JumpReluSAE
from featurelens.plugins.dictionaries.relu import ReluSAE
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.dictionaries.topk import TopKSAE

ACTIVATIONS: dict[str, type[SparseAutoencoder]] = {
    "topk": TopKSAE, "batchtopk": BatchTopKSAE, "relu": ReluSAE, "jumprelu": JumpReluSAE,
}


def make_transcoder(d_in: int, d_sae: int, *, activation: str = "topk", skip: bool = False,
                    d_out: int | None = None, hookpoint_out: str | None = None,
                    **options: Any) -> SparseAutoencoder:
    """A transcoder from ``d_in`` to ``d_out`` (default ``d_in``) with the given activation."""
    cls = ACTIVATIONS.get(activation)
    if cls is None:
        raise FeaturelensError(
            f"Unknown transcoder activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}."
        )
    options.pop("transcoder", None)
    options.setdefault("apply_b_dec_to_input", False)
    model = cls(d_in, d_sae, d_out=d_out, transcoder=True, skip=skip, activation=activation,
                hookpoint_out=hookpoint_out, **options)
    model.architecture = "transcoder"
    return model
