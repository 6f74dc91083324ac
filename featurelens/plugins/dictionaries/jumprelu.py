"""JumpReLU sparse autoencoder (Rajamanoharan et al. 2024; Gemma Scope).

A feature passes its pre-activation through only above its own learned threshold.
The threshold and the L0 penalty are trained with straight-through estimators: the
step function's derivative is replaced by a rectangle kernel of width ``bandwidth``.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.plugins.dictionaries.sae import SparseAutoencoder


def _kernel(hidden: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return ((hidden - threshold).abs() < bandwidth / 2).to(hidden.dtype) / bandwidth


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, threshold, bandwidth):  # type: ignore[override]
        ctx.save_for_backward(hidden, threshold)
        ctx.bandwidth = bandwidth
        return torch.relu(hidden) * (hidden > threshold)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        hidden, threshold = ctx.saved_tensors
        grad_hidden = grad * (hidden > threshold) * (hidden > 0)
        grad_threshold = (-threshold * _kernel(hidden, threshold, ctx.bandwidth) * grad)
        return grad_hidden, grad_threshold.sum(dim=0), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, threshold, bandwidth):  # type: ignore[override]
        ctx.save_for_backward(hidden, threshold)
        ctx.bandwidth = bandwidth
        return (hidden > threshold).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        hidden, threshold = ctx.saved_tensors
        grad_threshold = -_kernel(hidden, threshold, ctx.bandwidth) * grad
        return None, grad_threshold.sum(dim=0), None


class JumpReluSAE(SparseAutoencoder):
    """``f = relu(h) * (h > threshold)``; loss = MSE + ``l0_coefficient * L0``."""

    architecture = "jumprelu"

    def __init__(self, d_in: int, d_sae: int, *, l0_coefficient: float = 1.0,
                 bandwidth: float = 0.05, initial_threshold: float = 0.05, **options: Any):
        super().__init__(d_in, d_sae, l0_coefficient=float(l0_coefficient),
                         bandwidth=float(bandwidth), initial_threshold=float(initial_threshold),
                         **options)
        self.l0_coefficient = float(l0_coefficient)
        self.bandwidth = float(bandwidth)
        self.threshold = torch.nn.Parameter(torch.full((d_sae,), float(initial_threshold)))

    def activate(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.relu(hidden) * (hidden > self.threshold)

    def train_acts(self, hidden: torch.Tensor) -> torch.Tensor:
        return _JumpReLU.apply(hidden, self.threshold, self.bandwidth)

    def sparsity_penalty(self, hidden: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        l0 = _Step.apply(hidden, self.threshold, self.bandwidth).sum(dim=-1).mean()
        return self.l0_coefficient * l0

    @torch.no_grad()
    def after_step(self) -> None:
        super().after_step()
        self.threshold.clamp_(min=0.0)
