"""Which transcoder features fire on the prompt, and what each MLP's transcoder misses.

Every layer's transcoder encodes that layer's recorded MLP input; the nonzero
activations are the graph's candidate feature nodes, ordered by (layer, position,
local index). The first position carries no feature and no error node: it is the
attention sink of a causal LM (often a BOS token), whose huge-norm residual gives
activations that mean nothing about the prompt, and the reference implementation
(circuit-tracer) leaves it out the same way; its MLP output is held constant.

The error of layer ``l`` at position ``p`` is the real MLP output minus the transcoder's
full output (features, bias and skip path), so features plus error give back the real
model exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_set import TranscoderSet

#: Elements of one dense ``[positions, d_sae]`` block while encoding.
ENCODE_BLOCK_ELEMENTS = 8 * 2**20


@dataclass
class ActiveFeatures:
    """Active (layer, position, feature) triples, sorted, with their activations."""

    layer: torch.Tensor  #: [m] long
    position: torch.Tensor  #: [m] long
    local: torch.Tensor  #: [m] long, index inside the layer's transcoder
    feature: torch.Tensor  #: [m] long, global index in the set
    activation: torch.Tensor  #: [m]
    errors: torch.Tensor  #: [n_layers, n, d]

    def __len__(self) -> int:
        return int(self.layer.shape[0])


def transcoder_parts(transcoders: TranscoderSet, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(W_enc [d, s], W_dec [s, d], W_skip or None)`` of layer ``layer``, with decoder-norm
    rescaling folded in, so a feature reads ``x @ W_enc[:, j]`` (plus a constant) and writes
    ``activation * W_dec[j]``."""
    tc = transcoders.transcoder(layer)
    w_enc, w_dec = getattr(tc, "W_enc", None), getattr(tc, "W_dec", None)
    if w_enc is None or w_dec is None:
        raise FeaturelensError(
            f"Layer {layer}'s transcoder ({type(tc).__name__}) has no W_enc/W_dec matrices; graphs need "
            "encoder/decoder transcoders such as the built-in learners or the loaded formats.")
    w_enc, w_dec = w_enc.detach(), w_dec.detach()
    if getattr(tc, "rescale_acts_by_decoder_norm", False):
        norms = w_dec.norm(dim=1)
        w_enc, w_dec = w_enc * norms, w_dec / norms[:, None]
    skip = getattr(tc, "W_skip", None)
    return w_enc, w_dec, (skip.detach() if skip is not None else None)


@torch.no_grad()
def find_active(transcoders: TranscoderSet, mlp_in: list[torch.Tensor], mlp_out: list[torch.Tensor],
                *, dtype: torch.dtype) -> ActiveFeatures:
    """Encode every layer's MLP input; return active features and the error vectors."""
    n_layers = len(mlp_in)
    if getattr(transcoders, "cross", None):
        raise FeaturelensError(
            "This is a cross-layer transcoder set; graphs are built for per-layer sets so far: pass a set "
            "with one transcoder per layer.")
    if transcoders.layers != list(range(n_layers)):
        raise FeaturelensError(
            f"The transcoder set covers layers {transcoders.layers}, but a graph replaces every MLP of "
            f"this {n_layers}-layer model; pass a set with one transcoder for each layer 0..{n_layers - 1}.")
    if transcoders.d_model != mlp_in[0].shape[-1]:
        raise FeaturelensError(
            f"The transcoder set reads width {transcoders.d_model} but the model's MLP input is "
            f"{mlp_in[0].shape[-1]} wide; the set belongs to another model.")
    n = mlp_in[0].shape[0]
    layers, positions, locals_, values, errors = [], [], [], [], []
    for layer in range(n_layers):
        tc = transcoders.transcoder(layer)
        _, w_dec, w_skip = transcoder_parts(transcoders, layer)
        x = mlp_in[layer]
        recon = torch.zeros_like(mlp_out[layer])
        block = max(1, ENCODE_BLOCK_ELEMENTS // max(1, int(tc.d_sae)))
        for start in range(1, n, block):
            stop = min(n, start + block)
            acts = tc.encode(x[start:stop].to(tc.W_enc.dtype)).to(dtype)
            pos, loc = torch.nonzero(acts > 0, as_tuple=True)
            val = acts[pos, loc]
            layers.append(torch.full_like(pos, layer))
            positions.append(pos + start)
            locals_.append(loc)
            values.append(val)
            recon[start:stop].index_add_(0, pos, val[:, None] * w_dec.to(dtype)[loc])
        recon = recon + tc.b_dec.detach().to(dtype)
        if w_skip is not None:
            recon = recon + x @ w_skip.to(dtype).T
        error = mlp_out[layer] - recon
        error[0] = 0
        errors.append(error)
    layer_t = torch.cat(layers)
    position_t = torch.cat(positions)
    local_t = torch.cat(locals_)
    order = torch.argsort((layer_t * n + position_t) * (transcoders.d_sae + 1) + local_t)
    layer_t, position_t, local_t = layer_t[order], position_t[order], local_t[order]
    offsets = torch.tensor(transcoders.offsets, device=layer_t.device)
    return ActiveFeatures(layer=layer_t, position=position_t, local=local_t,
                          feature=offsets[layer_t] + local_t, activation=torch.cat(values)[order],
                          errors=torch.stack(errors))
