"""The base class every dictionary (sparse autoencoder, transcoder, identity) shares.

A dictionary maps an activation ``x [n, d_in]`` to feature activations ``f [n, d_sae]``
and back to ``[n, d_out]``. Wide dictionaries are never densified over many tokens:
:meth:`Dictionary.encode_sparse` returns the active features of each token as
``(values, indices)`` with a fixed width per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class SparseActs:
    """Active features per token: ``values [n, k]`` and ``indices [n, k]``; padding is 0."""

    values: torch.Tensor
    indices: torch.Tensor

    def to_dense(self, d_sae: int) -> torch.Tensor:
        out = torch.zeros(self.values.shape[0], d_sae, dtype=self.values.dtype, device=self.values.device)
        return out.scatter_(1, self.indices, self.values)


class Dictionary(torch.nn.Module):
    """A learned (or fixed) feature basis at one hookpoint of one model.

    Subclasses implement :meth:`encode` and :meth:`decode`; sparse-native ones (TopK)
    override :meth:`encode_sparse` and :meth:`decode_sparse` to skip the dense form.
    ``config`` holds everything needed to rebuild it (it is stored with the weights).
    """

    architecture: str = "dictionary"

    def __init__(self, d_in: int, d_sae: int, *, d_out: int | None = None,
                 hookpoint: str | None = None, model_id: str | None = None,
                 config: dict[str, Any] | None = None):
        super().__init__()
        self.d_in = d_in
        self.d_sae = d_sae
        self.d_out = d_out if d_out is not None else d_in
        self.hookpoint = hookpoint
        self.model_id = model_id
        self.config: dict[str, Any] = dict(config or {})

    @property
    def is_transcoder(self) -> bool:
        return bool(self.config.get("transcoder", False))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[n, d_sae]`` (non-negative) for inputs ``[n, d_in]``."""
        raise NotImplementedError

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[n, d_out]`` from feature activations ``[n, d_sae]``."""
        raise NotImplementedError

    def encode_sparse(self, x: torch.Tensor, max_active: int | None = None) -> SparseActs:
        """The active features of each row of ``x``.

        The default densifies ``x``'s rows (callers pass modest chunks) and keeps the
        ``max_active`` largest per row, or as many as the busiest row has.
        """
        dense = self.encode(x)
        k = max_active or int((dense > 0).sum(dim=1).max().item()) or 1
        values, indices = dense.topk(min(k, self.d_sae), dim=1, sorted=False)
        return SparseActs(values.clamp_min(0), indices)

    def decode_sparse(self, acts: SparseActs) -> torch.Tensor:
        """Reconstruction from sparse activations (override for a gather-based decode)."""
        return self.decode(acts.to_dense(self.d_sae))

    def decoder_directions(self) -> torch.Tensor:
        """``[d_sae, d_out]``: each feature's write direction (for logit effects)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
