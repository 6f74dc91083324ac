"""Autograd functions that touch only the ``k`` active features of each row.

A TopK step has one unavoidable dense product (the encoder forward,
``[n, d_in] @ [d_in, d_sae]``). Everything else involves ``n * k`` entries, so we
never build the dense ``[n, d_sae]`` code: the decoder is a sparse-times-dense
product, and the encoder's weight gradient is a sparse product too, instead of the
dense ``x.T @ grad`` that autograd would do through ``topk`` + ``scatter``. On a
16x SAE with ``k = 32`` this cuts a training step's dense multiply-adds from five
``n * d_in * d_sae`` products to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SPARSE_CHECKS = False  # indices come from topk: always in range and well formed


def _rows(n: int, k: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device).repeat_interleave(k)


def _scatter_matmul(indices: torch.Tensor, values: torch.Tensor, dense: torch.Tensor,
                    n_features: int) -> torch.Tensor:
    """``S.T @ dense`` where ``S [n, n_features]`` has ``values`` at ``indices``.

    Row ``j`` of the result sums ``values[r, c] * dense[r]`` over the entries with
    ``indices[r, c] == j``: the weight gradient of a gather, computed in float32
    (sparse products do not support bfloat16).
    """
    n, k = indices.shape
    coords = torch.stack([indices.reshape(-1), _rows(n, k, indices.device)])
    sparse = torch.sparse_coo_tensor(coords, values.reshape(-1).float(), (n_features, n),
                                     check_invariants=_SPARSE_CHECKS)
    return torch.sparse.mm(sparse, dense.float())


def _gather_matmul(indices: torch.Tensor, values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``S @ table`` where ``S [n, rows(table)]`` has ``values`` at ``indices``.

    ``embedding_bag`` in sum mode is exactly this product and reads only the ``n * k``
    rows it needs; the table must be contiguous for it to be fast.
    """
    table = table.contiguous()
    return F.embedding_bag(indices, table, per_sample_weights=values.to(table.dtype), mode="sum")


def _rowwise_dots(indices: torch.Tensor, table: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``out[r, c] = <table[indices[r, c]], vectors[r]>``.

    This is the gradient of ``embedding_bag`` with respect to its per-sample weights,
    so we let ``embedding_bag``'s native backward compute it (several times faster
    than gathering the rows ourselves, and it needs no ``[n, k, d]`` buffer).
    """
    table = table.detach().contiguous()
    with torch.enable_grad():
        weights = torch.ones(indices.shape, dtype=table.dtype, device=indices.device,
                             requires_grad=True)
        out = F.embedding_bag(indices, table, per_sample_weights=weights, mode="sum")
        (grad,) = torch.autograd.grad(out, weights, vectors.to(table.dtype))
    return grad


class SelectedPreActs(torch.autograd.Function):
    """Forward: the given pre-activations of the selected features (already computed
    without grad). Backward: gradients for ``sae_in``, ``W_enc`` and ``b_enc`` that
    touch only the selected ``(row, feature)`` pairs."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, sae_in: torch.Tensor, w_enc: torch.Tensor,  # type: ignore[override]
                b_enc: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(sae_in, w_enc, indices)
        return values.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        sae_in, w_enc, indices = ctx.saved_tensors
        d_sae = w_enc.shape[1]
        grad_in = grad_w = grad_b = None
        if ctx.needs_input_grad[3]:
            grad_b = torch.zeros(d_sae, dtype=torch.float32, device=grad.device)
            grad_b.index_add_(0, indices.reshape(-1), grad.reshape(-1).float())
            grad_b = grad_b.to(w_enc.dtype)
        if ctx.needs_input_grad[2]:
            grad_w = _scatter_matmul(indices, grad, sae_in, d_sae).T.to(w_enc.dtype)
        if ctx.needs_input_grad[1]:
            grad_in = _gather_matmul(indices, grad, w_enc.T).to(sae_in.dtype)
        return None, grad_in, grad_w, grad_b, None


class SparseDecode(torch.autograd.Function):
    """``out[r] = sum_c values[r, c] * W_dec[indices[r, c]]`` without densifying."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, w_dec: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(values, w_dec, indices)
        return _gather_matmul(indices, values, w_dec).to(w_dec.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        values, w_dec, indices = ctx.saved_tensors
        grad_values = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_values = _rowwise_dots(indices, w_dec, grad).to(values.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = _scatter_matmul(indices, values, grad, w_dec.shape[0]).to(w_dec.dtype)
        return grad_values, grad_w, None


def selected_pre_acts(values: torch.Tensor, sae_in: torch.Tensor, w_enc: torch.Tensor,
                      b_enc: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Differentiable view of ``(sae_in @ w_enc + b_enc).gather(1, indices)``."""
    return SelectedPreActs.apply(values, sae_in, w_enc, b_enc, indices)


def sparse_decode(values: torch.Tensor, w_dec: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Differentiable ``scatter(values, indices) @ w_dec`` that never builds the scatter."""
    return SparseDecode.apply(values, w_dec, indices)
