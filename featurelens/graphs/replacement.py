"""The local replacement model of one prompt, and its transposed (backward) sweep.

One real forward pass of a Llama-style model records, per layer: the token embeddings,
the attention queries and keys after rotary embedding, the RMSNorm scales ``1/rms`` of
the three norms, the MLP inputs and the MLP outputs. Freezing the attention patterns
(softmax of ``q k^T``) and the norm scales at those values, and replacing each MLP by its
transcoder's features plus an error term (what the transcoder misses, a constant), makes
the residual stream a *linear* function of the feature activations, the error terms and
the embeddings: only the value/output path of attention, the frozen norms and a
transcoder's skip path remain, all linear.

:meth:`LocalReplacement.sweep` runs that linear map backwards for a batch of targets at
once (``[B, n, d]`` gradients): it starts at the highest layer any target of the batch
reads, injects each target's read-out direction where the target reads the residual
(a feature's encoder row at its layer's MLP input, a logit direction after the final
norm), and hands the gradient at every layer's MLP output to a callback, which contracts
it with the sources written there (decoder rows times activations, error vectors).
Attention is transposed in chunks of query positions, so nothing of size ``n x n`` is
kept unless the patterns of every layer fit :data:`PATTERN_CACHE_BYTES`; memory then
grows linearly with the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from featurelens.core.errors import FeaturelensError

#: Attention patterns of every layer are kept when they fit in this many bytes;
#: otherwise they are recomputed from the cached queries and keys, chunk by chunk.
PATTERN_CACHE_BYTES = 256 * 2**20
#: Size of one recomputed block of attention pattern (elements), bounding its memory.
PATTERN_CHUNK_ELEMENTS = 4 * 2**20
#: Model types whose blocks are Llama's (RMSNorm, rotary attention, gated MLP, no sliding window).
SUPPORTED_MODEL_TYPES = ("llama",)


@dataclass
class PromptCache:
    """What the real forward pass left behind (all on the compute device, ``dtype``)."""

    input_ids: torch.Tensor  #: [n]
    embeddings: torch.Tensor  #: [n, d] the residual stream before layer 0
    mlp_in: list[torch.Tensor]  #: per layer [n, d]: the MLP input (post-norm, weight applied)
    mlp_out: list[torch.Tensor]  #: per layer [n, d]
    attn_scale: list[torch.Tensor]  #: per layer [n]: 1/rms of the attention norm
    mlp_scale: list[torch.Tensor]  #: per layer [n]: 1/rms of the MLP norm
    final_scale: torch.Tensor  #: [n]: 1/rms of the final norm
    queries: list[torch.Tensor]  #: per layer [H, n, dh], rotary applied
    keys: list[torch.Tensor]  #: per layer [KV, n, dh], rotary applied
    logits: torch.Tensor  #: [V] at the last position


class LocalReplacement:
    """A Llama-style causal LM frozen around one prompt (see the module docstring)."""

    def __init__(self, model: Any, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        config = model.config
        model_type = getattr(config, "model_type", "?")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise FeaturelensError(
                f"Attribution graphs support Llama-style models ({', '.join(SUPPORTED_MODEL_TYPES)}), "
                f"not {model_type!r}; use SmolLM2 (--model smollm2) or another Llama checkpoint.")
        self.model = model
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.n_layers = int(config.num_hidden_layers)
        self.d_model = int(config.hidden_size)
        self.n_heads = int(config.num_attention_heads)
        self.n_kv = int(getattr(config, "num_key_value_heads", None) or self.n_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or self.d_model // self.n_heads)
        self.group = self.n_heads // self.n_kv
        base = model.model
        self._layers = base.layers
        self._norm = base.norm
        self.eps = [float(layer.input_layernorm.variance_epsilon) for layer in base.layers]
        self.eps2 = [float(layer.post_attention_layernorm.variance_epsilon) for layer in base.layers]
        self.final_eps = float(base.norm.variance_epsilon)
        self.scaling = [float(layer.self_attn.scaling) for layer in base.layers]

        def weight(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach().to(self.device, self.dtype)

        self.attn_norm_w = [weight(layer.input_layernorm.weight) for layer in base.layers]
        self.mlp_norm_w = [weight(layer.post_attention_layernorm.weight) for layer in base.layers]
        self.final_norm_w = weight(base.norm.weight)
        self.w_v = [weight(layer.self_attn.v_proj.weight) for layer in base.layers]  # [KV*dh, d]
        self.w_o = [weight(layer.self_attn.o_proj.weight) for layer in base.layers]  # [d, H*dh]
        self.unembed = weight(model.get_output_embeddings().weight)  # [V, d]
        self.cache: PromptCache | None = None
        self._patterns: list[torch.Tensor] | None = None

    # -- the real forward pass -------------------------------------------------------------
    @torch.no_grad()
    def run(self, input_ids: torch.Tensor) -> PromptCache:
        """One forward pass of the real model over ``input_ids [n]``, recording the cache."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        ids = input_ids.reshape(1, -1).to(next(self.model.parameters()).device)
        n = ids.shape[1]
        record: dict[str, Any] = {"q": [None] * self.n_layers, "k": [None] * self.n_layers,
                                  "mlp_in": [None] * self.n_layers, "mlp_out": [None] * self.n_layers,
                                  "attn_in": [None] * self.n_layers, "mid": [None] * self.n_layers}
        handles = []

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach()[0].to(self.device, self.dtype)

        def on_attention(index: int):
            def hook(module: Any, args: tuple, kwargs: dict) -> None:
                hidden = kwargs.get("hidden_states", args[0] if args else None)
                cos, sin = kwargs["position_embeddings"]
                shape = (*hidden.shape[:-1], -1, self.head_dim)
                q = module.q_proj(hidden).view(shape).transpose(1, 2)
                k = module.k_proj(hidden).view(shape).transpose(1, 2)
                q, k = apply_rotary_pos_emb(q, k, cos, sin)
                record["q"][index], record["k"][index] = keep(q), keep(k)
            return hook

        def on_input(key: str, index: int):
            def hook(module: Any, args: tuple) -> None:
                record[key][index] = keep(args[0])
            return hook

        def on_output(key: str, index: int):
            def hook(module: Any, args: tuple, output: Any) -> None:
                record[key][index] = keep(output if torch.is_tensor(output) else output[0])
            return hook

        try:
            for index, layer in enumerate(self._layers):
                handles.append(layer.self_attn.register_forward_pre_hook(on_attention(index),
                                                                         with_kwargs=True))
                handles.append(layer.input_layernorm.register_forward_pre_hook(on_input("attn_in", index)))
                handles.append(layer.post_attention_layernorm.register_forward_pre_hook(
                    on_input("mid", index)))
                handles.append(layer.mlp.register_forward_pre_hook(on_input("mlp_in", index)))
                handles.append(layer.mlp.register_forward_hook(on_output("mlp_out", index)))
            handles.append(self._norm.register_forward_pre_hook(on_input("final", 0)))
            record["final"] = [None]
            out = self.model(input_ids=ids, use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
        missing = [key for key in ("q", "k", "mlp_in", "mlp_out", "attn_in", "mid")
                   if any(value is None for value in record[key])]
        if missing or record["final"][0] is None:
            raise FeaturelensError(
                "The model's forward pass did not run through the modules a Llama block has "
                f"(nothing recorded for {', '.join(missing) or 'the final norm'}); this model's "
                "layout is not supported for attribution graphs.")

        def inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
            x = x.to(torch.promote_types(x.dtype, torch.float32))
            return torch.rsqrt(x.pow(2).mean(-1) + eps).to(self.dtype)

        embeddings = record["attn_in"][0]
        self.cache = PromptCache(
            input_ids=ids[0].cpu(), embeddings=embeddings,
            mlp_in=record["mlp_in"], mlp_out=record["mlp_out"],
            attn_scale=[inv_rms(x, e) for x, e in zip(record["attn_in"], self.eps)],
            mlp_scale=[inv_rms(x, e) for x, e in zip(record["mid"], self.eps2)],
            final_scale=inv_rms(record["final"][0], self.final_eps),
            queries=record["q"], keys=record["k"],
            logits=out.logits[0, -1].detach().to(self.device, torch.float32))
        pattern_bytes = self.n_layers * self.n_heads * n * n * torch.finfo(self.dtype).bits // 8
        self._patterns = None
        if pattern_bytes <= PATTERN_CACHE_BYTES:
            self._patterns = [self.pattern(layer, 0, n) for layer in range(self.n_layers)]
        return self.cache

    # -- frozen pieces ---------------------------------------------------------------------
    def pattern(self, layer: int, start: int, stop: int) -> torch.Tensor:
        """Attention probabilities ``[H, stop - start, n]`` of query positions ``start:stop``."""
        cache = self._require()
        if self._patterns is not None:
            return self._patterns[layer][:, start:stop]
        q = cache.queries[layer][:, start:stop]  # [H, P, dh]
        k = cache.keys[layer].repeat_interleave(self.group, dim=0)  # [H, n, dh]
        work = torch.promote_types(q.dtype, torch.float32)
        scores = (q @ k.transpose(1, 2)).to(work) * self.scaling[layer]
        n = k.shape[1]
        rows = torch.arange(start, stop, device=scores.device)[:, None]
        cols = torch.arange(n, device=scores.device)[None, :]
        scores.masked_fill_(cols > rows, float("-inf"))
        return torch.softmax(scores, dim=-1).to(self.dtype)

    def logit_direction(self, token: int) -> torch.Tensor:
        """``W_U[token]`` minus the mean unembedding row: what a demeaned logit reads."""
        return self.unembed[token] - self.unembed.mean(dim=0)

    def _require(self) -> PromptCache:
        if self.cache is None:
            raise RuntimeError("LocalReplacement.run() must be called before attribution.")
        return self.cache

    # -- the transposed sweep --------------------------------------------------------------
    def attention_transpose(self, layer: int, grad: torch.Tensor) -> torch.Tensor:
        """Gradient at the attention input's residual from ``grad [B, n, d]`` at its output."""
        cache = self._require()
        batch, n, _ = grad.shape
        u = (grad @ self.w_o[layer]).view(batch, n, self.n_heads, self.head_dim).transpose(1, 2)
        w = torch.zeros_like(u)  # [B, H, n, dh]: sum over queries p of A[h, p, q] u[b, h, p]
        chunk = max(1, PATTERN_CHUNK_ELEMENTS // max(1, self.n_heads * n))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            probs = self.pattern(layer, start, stop)  # [H, P, n]
            w += torch.einsum("hpq,bhpe->bhqe", probs, u[:, :, start:stop])
        w = w.view(batch, self.n_kv, self.group, n, self.head_dim).sum(2)
        w = w.transpose(1, 2).reshape(batch, n, self.n_kv * self.head_dim)
        x_grad = w @ self.w_v[layer]  # [B, n, d]
        return x_grad * (self.attn_norm_w[layer] * cache.attn_scale[layer][:, None])

    def sweep(self, top_layer: int, inject: Callable[[int, torch.Tensor], None],
              read: Callable[[int, torch.Tensor], None], batch: int,
              skip: Callable[[int, torch.Tensor], torch.Tensor | None],
              final: torch.Tensor | None = None) -> torch.Tensor:
        """Run the linear model backwards for ``batch`` targets; returns the embedding gradient.

        ``final`` ([B, n, d] or None) is the gradient after the last layer (logit targets,
        already through the final norm). For each layer ``l`` from ``top_layer`` down:
        ``read(l, g)`` sees the gradient at layer ``l``'s MLP output (skipped for the
        layer ``n_layers``), ``skip(l, g)`` returns what flows back through the
        transcoder's skip path into the MLP input (or None), ``inject(l, g_mid)`` adds the
        targets that read layer ``l``'s MLP input (``g_mid`` is the gradient there, in the
        residual, so targets inject ``encoder row * norm weight * 1/rms``).
        """
        cache = self._require()
        n = cache.embeddings.shape[0]
        grad = final if final is not None else torch.zeros(batch, n, self.d_model, device=self.device,
                                                           dtype=self.dtype)
        for layer in range(min(top_layer, self.n_layers - 1), -1, -1):
            if layer < top_layer or final is not None:
                read(layer, grad)
            through_skip = skip(layer, grad)
            mid = grad.clone()
            if through_skip is not None:
                mid += through_skip * (self.mlp_norm_w[layer] * cache.mlp_scale[layer][:, None])
            inject(layer, mid)
            grad = mid + self.attention_transpose(layer, mid)
        return grad

    def final_gradient(self, directions: torch.Tensor) -> torch.Tensor:
        """``[B, n, d]`` gradient after the last layer for read-outs at the last position."""
        cache = self._require()
        n = cache.embeddings.shape[0]
        grad = torch.zeros(directions.shape[0], n, self.d_model, device=self.device, dtype=self.dtype)
        grad[:, -1] = directions.to(self.dtype) * (self.final_norm_w * cache.final_scale[-1])
        return grad
