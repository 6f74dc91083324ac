"""ReLU sparse autoencoder with an L1 penalty (Bricken et al. 2023; SAELens "standard").

With decoder rows held at unit norm the L1 of the codes cannot be gamed by shrinking
codes and growing decoder rows, so the plain L1 of ``f`` is the penalty.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.dictionaries.sae import SparseAutoencoder


class ReluSAE(SparseAutoencoder):
    """``f = relu(pre_acts(x))``; loss = MSE + ``l1_coefficient * |f|_1``."""

    architecture = "relu"

    def __init__(self, d_in: int, d_sae: int, *, l1_coefficient: float = 5.0, **options: Any):
        if not isinstance(l1_coefficient, (int, float)) or l1_coefficient < 0:
            raise FeaturelensError(
                f"l1_coefficient must be a non-negative number, got {l1_coefficient!r}; "
                "larger values give sparser codes (try 1 to 10)."
            )
        super().__init__(d_in, d_sae, l1_coefficient=float(l1_coefficient), **options)
        self.l1_coefficient = float(l1_coefficient)

    def activate(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.relu(hidden)

    def sparsity_penalty(self, hidden: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.l1_coefficient * f.abs().sum(dim=-1).mean()
