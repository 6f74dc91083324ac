"""The ``identity`` dictionary: each feature is one neuron (dimension) of the hookpoint.

It needs no training and no file, so extraction works before any sparse autoencoder
exists, and it is the baseline a learned dictionary should beat. A feature's activation
is the neuron's positive part: features are non-negative by contract, and a neuron's
negative side is a different direction, not a weaker version of the positive one.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.dictionaries.base import Dictionary, SparseActs
from featurelens.core.errors import FeaturelensError


class IdentityDictionary(Dictionary):
    """``encode(x) = relu(x)``, ``decode(f) = f``: feature i is neuron i."""

    architecture = "identity"

    def __init__(self, d_in: int, d_sae: int | None = None, **options: Any):
        if d_sae is not None and d_sae != d_in:
            raise FeaturelensError(
                f"The identity dictionary has one feature per neuron, so d_sae must equal d_in "
                f"({d_in}), not {d_sae}; leave d_sae out."
            )
        super().__init__(d_in, d_in, hookpoint=options.get("hookpoint"),
                         model_id=options.get("model_id"), config={"architecture": "identity"})

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def encode_sparse(self, x: torch.Tensor, max_active: int | None = None) -> SparseActs:
        """Every neuron, in order: no top-k needed since the width is the model's."""
        values = torch.relu(x)
        indices = torch.arange(self.d_in, device=x.device).expand(x.shape[0], -1)
        return SparseActs(values, indices)

    def decoder_directions(self) -> torch.Tensor:
        return torch.eye(self.d_in)

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruction error of relu(x) (the identity has nothing to learn)."""
        target = x if target is None else target
        return {"loss": (self.decode(self.encode(x)) - target).pow(2).mean()}
