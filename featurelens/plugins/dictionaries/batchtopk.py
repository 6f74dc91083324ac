"""BatchTopK sparse autoencoder (Bussmann et al. 2024).

Training keeps the ``k * n`` largest activations of the whole batch, so busy tokens
may use more features than quiet ones. Inference cannot depend on the batch, so a
global threshold is learned alongside (an exponential moving average of the smallest
activation kept) and encoding is ``relu(h) * (h > threshold)``: a JumpReLU with one
shared threshold, which is also how it is exported to SAELens.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.training.distributed import current
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.dictionaries.topk import check_k


class BatchTopKSAE(SparseAutoencoder):
    """Batch-level TopK while training; a learned global threshold at inference."""

    architecture = "batchtopk"

    def __init__(self, d_in: int, d_sae: int, *, k: int | None = None, threshold_beta: float = 0.999,
                 **options: Any):
        if isinstance(d_sae, int) and d_sae > 0:  # bad sizes are reported by the base class
            k = check_k(self.architecture, min(32, d_sae) if k is None else k, d_sae)
        super().__init__(d_in, d_sae, k=k, threshold_beta=threshold_beta, **options)
        self.k = k
        self.threshold_beta = float(threshold_beta)
        # -1 means "not learned yet"; encode then keeps every positive activation.
        self.register_buffer("threshold", torch.tensor(-1.0))

    def activate(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.relu(hidden) * (hidden > self.threshold)

    def train_acts(self, hidden: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(hidden)
        parallel = current()
        if parallel is not None:  # data-parallel: the k * n largest of the global batch
            cut, smallest = parallel.batch_topk_cut(acts.detach(), self.k)
            if smallest is not None:
                self._update_threshold(smallest.reshape(1))
            return acts * (acts >= cut)
        flat = acts.reshape(-1)
        n_keep = min(self.k * hidden.shape[0], flat.numel())
        values, indices = flat.topk(n_keep, sorted=False)
        kept = torch.zeros_like(flat).scatter(0, indices, values).reshape(hidden.shape)
        self._update_threshold(values.detach())
        return kept

    @torch.no_grad()
    def _update_threshold(self, kept: torch.Tensor) -> None:
        positive = kept[kept > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min().float()
        if float(self.threshold) < 0:
            self.threshold.fill_(smallest)
        else:
            beta = self.threshold_beta
            self.threshold.mul_(beta).add_((1 - beta) * smallest)

    def extra_state_for_save(self) -> dict[str, torch.Tensor]:
        return {"threshold": self.threshold.detach().clamp_min(0).expand(self.d_sae).clone()}
