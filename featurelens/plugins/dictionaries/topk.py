"""TopK sparse autoencoder (Gao et al. 2024): keep the ``k`` largest pre-activations.

Inference and training are sparse-aware: :meth:`TopKSAE.encode_sparse` returns the
``k`` active features per row, :meth:`TopKSAE.decode_sparse` gathers only their
decoder rows, and :meth:`TopKSAE.loss` trains through
:mod:`featurelens.plugins.dictionaries.sparse_ops` so that no dense ``[n, d_sae]``
code (nor its gradient) is ever built.
"""

from __future__ import annotations

from typing import Any

import torch

from featurelens.core.dictionaries.base import SparseActs
from featurelens.core.errors import FeaturelensError
from featurelens.core.training.distributed import batch_variance
from featurelens.plugins.dictionaries.sae import SparseAutoencoder, encoder_matmul
from featurelens.plugins.dictionaries.sparse_ops import selected_pre_acts, sparse_decode

#: Pre-activations computed at once: bounds the transient ``[rows, columns]`` block to
#: about 32 MiB, so no full ``[n, d_sae]`` matrix ever exists.
CHUNK_ELEMENTS = 1 << 23
#: Fewest rows one pass over ``W_enc`` serves. A dictionary so wide that fewer rows of its
#: pre-activations fit in ``CHUNK_ELEMENTS`` (over 32,768 features) is taken in blocks of
#: this many rows by blocks of columns instead: a pass over the 2.4 GB ``W_enc`` of a
#: million features for every 8 rows made the product memory-bound, several times slower
#: than the same arithmetic on 256 rows at once.
MIN_ROWS = 256


@torch.no_grad()
def select_topk(sae_in: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor, k: int, *,
                scale: torch.Tensor | None = None, dead: torch.Tensor | None = None, k_aux: int = 0,
                fused_bias: bool = False, relu_first: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Top-``k`` pre-activations (values, indices) per row, and optionally the top-``k_aux``
    among the ``dead`` feature indices, computed block by block over the rows."""
    n, d_sae = sae_in.shape[0], w_enc.shape[1]
    rows = max(1, CHUNK_ELEMENTS // d_sae)
    if rows < MIN_ROWS and n > rows and dead is None:
        return (*_topk_by_column_blocks(sae_in, w_enc, b_enc, k, scale, fused_bias, relu_first), None, None)
    values, indices, aux_values, aux_indices = [], [], [], []
    for start in range(0, n, rows):
        hidden = encoder_matmul(sae_in[start:start + rows], w_enc, b_enc, fused_bias)
        if relu_first:  # sparsify ranks relu(pre-acts): ties at zero and at the k-th value break as it does
            hidden = torch.relu(hidden)
        if scale is not None:
            hidden = hidden * scale
        v, i = hidden.topk(k, dim=-1, sorted=False)
        values.append(v)
        indices.append(i)
        if dead is not None and k_aux > 0:
            av, ai = hidden.index_select(1, dead).topk(k_aux, dim=-1, sorted=False)
            aux_values.append(av)
            aux_indices.append(dead[ai])
    if not aux_values:
        return torch.cat(values), torch.cat(indices), None, None
    return torch.cat(values), torch.cat(indices), torch.cat(aux_values), torch.cat(aux_indices)


def _topk_by_column_blocks(sae_in: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor, k: int,
                           scale: torch.Tensor | None, fused_bias: bool,
                           relu_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`select_topk` (without the auxiliary part) for a wide ``w_enc``: ``MIN_ROWS``
    rows at a time, each against blocks of columns, keeping a running top-``k`` per row, so
    one pass over ``w_enc`` serves ``MIN_ROWS`` rows. The features kept are those a whole
    row's top-``k`` keeps (barring exact ties, and the matrix product's last-bit rounding,
    which may depend on the block's shape)."""
    n, d_sae = sae_in.shape[0], w_enc.shape[1]
    columns = max(k, CHUNK_ELEMENTS // MIN_ROWS)
    values, indices = [], []
    for start in range(0, n, MIN_ROWS):
        x = sae_in[start:start + MIN_ROWS]
        best_v = best_i = None
        for first in range(0, d_sae, columns):
            last = min(first + columns, d_sae)
            hidden = encoder_matmul(x, w_enc[:, first:last], b_enc[first:last], fused_bias)
            if relu_first:
                hidden = torch.relu(hidden)
            if scale is not None:
                hidden = hidden * scale[first:last]
            v, i = hidden.topk(min(k, last - first), dim=-1, sorted=False)
            i = i + first
            if best_v is not None:
                v, i = torch.cat([best_v, v], dim=1), torch.cat([best_i, i], dim=1)
                v, keep = v.topk(k, dim=-1, sorted=False)
                i = i.gather(1, keep)
            best_v, best_i = v, i
        values.append(best_v)
        indices.append(best_i)
    return torch.cat(values), torch.cat(indices)


def check_k(architecture: str, k: Any, d_sae: int) -> int:
    """``k`` as an int in ``1..d_sae``, or one clear sentence saying what is wrong."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= d_sae:
        raise FeaturelensError(
            f"A {architecture} dictionary needs k between 1 and d_sae={d_sae}, got {k!r}; "
            "pass the number of active features per token as an integer."
        )
    return k


class TopKSAE(SparseAutoencoder):
    """``f = scatter(relu(topk(pre_acts(x), k)))``; decoder rows kept at unit norm."""

    architecture = "topk"

    def __init__(self, d_in: int, d_sae: int, *, k: int | None = None, **options: Any):
        if isinstance(d_sae, int) and d_sae > 0:  # bad sizes are reported by the base class
            k = check_k(self.architecture, min(32, d_sae) if k is None else k, d_sae)
        super().__init__(d_in, d_sae, k=k, **options)
        self.k = k

    def activate(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.get("relu_first"):
            hidden = torch.relu(hidden)
        values, indices = hidden.topk(self.k, dim=-1, sorted=False)
        return torch.zeros_like(hidden).scatter_(-1, indices, torch.relu(values))

    def encode_sparse(self, x: torch.Tensor, max_active: int | None = None) -> SparseActs:
        """The ``k`` selected features per row (zeros where ReLU cut a selected one)."""
        x = x.reshape(-1, x.shape[-1]).to(self.W_enc.dtype)
        sae_in = x - self.b_dec if self.apply_b_dec_to_input else x
        k = min(self.k, max_active) if max_active else self.k
        scale = self.decoder_norms() if self.rescale_acts_by_decoder_norm else None
        values, indices, _, _ = select_topk(sae_in, self.W_enc, self.b_enc, k, scale=scale,
                                            fused_bias=bool(self.config.get("fused_bias")),
                                            relu_first=bool(self.config.get("relu_first")))
        return SparseActs(torch.relu(values), indices)

    def decode_sparse(self, acts: SparseActs) -> torch.Tensor:
        values = acts.values.to(self.W_dec.dtype)
        if self.rescale_acts_by_decoder_norm:
            values = values / self.decoder_norms()[acts.indices]
        return sparse_decode(values, self.W_dec, acts.indices) + self.b_dec

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None,
             dead_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Sparse-aware MSE + AuxK; same value as the dense loss, about 1/5 the work."""
        if self.rescale_acts_by_decoder_norm:
            return super().loss(x, target, dead_mask)
        target = x if target is None else target
        x = x.to(self.W_enc.dtype)
        sae_in = x - self.b_dec if self.apply_b_dec_to_input else x
        use_aux = dead_mask is not None and self.aux_coefficient > 0 and bool(dead_mask.any())
        dead = dead_mask.nonzero().squeeze(1) if use_aux else None
        k_aux = min(self.aux_k, int(dead.numel())) if dead is not None else 0
        top, indices, aux_top, aux_idx = select_topk(sae_in.detach(), self.W_enc, self.b_enc, self.k,
                                                     dead=dead, k_aux=k_aux)
        values = torch.relu(selected_pre_acts(top, sae_in, self.W_enc, self.b_enc, indices))
        recon = sparse_decode(values, self.W_dec, indices) + self.b_dec
        skip = self.skip_out(x)
        if skip is not None:
            recon = recon + skip
        error = target.to(recon.dtype) - recon
        mse = error.pow(2).sum(dim=-1).mean()
        loss = mse
        out: dict[str, torch.Tensor] = {"mse": mse.detach()}
        if aux_top is not None:
            residual = error.detach()
            aux_values = torch.relu(selected_pre_acts(aux_top, sae_in, self.W_enc, self.b_enc, aux_idx))
            predicted = sparse_decode(aux_values, self.W_dec, aux_idx)
            denom = batch_variance(residual).clamp_min(1e-12)  # whole global batch when data-parallel
            aux = (predicted - residual).pow(2).sum(dim=-1).mean() / denom
            loss = loss + self.aux_coefficient * aux
            out["aux"] = aux.detach()
        active = values.detach() > 0
        fired = torch.zeros(self.d_sae, dtype=torch.bool, device=x.device)
        fired[indices[active]] = True
        out["loss"] = loss
        out["l0"] = active.sum(dim=-1).float().mean()
        out["fired"] = fired
        t = target.to(recon.dtype)
        out["variance"] = (t - t.mean(dim=0)).pow(2).sum(dim=-1).mean().detach()
        return out
