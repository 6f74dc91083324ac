"""Run a prompt's shared prefix once and continue every request from its key/value cache.

Why: explanation and simulation prompts start with the same instructions and few-shot
turns (with today's prompts and SmolLM2, 196 of an explanation prompt's ~600 tokens
and 139 of a simulation prompt's ~820). A request that declares that prefix
(``shared_prefix`` messages or ``shared_prompt_chars`` characters) gets it from a small
LRU of prefixes already run, keyed by the prefix's token ids, and only its own suffix is
prefilled. It saves less than the prefix's share of tokens (BENCHMARKS.md "Local models:
one core per request"): the prefix's tokens are the cheapest ones to attend from, and
the output head at the positions a simulation reads is the same work either way.

Why the attention is replaced: transformers gives a query that continues a cache an
explicit mask, and on a CPU masked attention falls off the fused causal kernel; that
measured slower than running the whole prompt again. For one unpadded row continuing
a cache the mask is known (every prefix key is visible, the suffix is causal), so
:func:`_attention` runs the fused kernel twice, over the prefix keys unmasked and over
the suffix keys with ``is_causal``, and merges the two by their log-sum-exp. Any other
call (no cache, decoding one token, batches, masks it did not make) goes to
transformers' own SDPA attention unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

ATTENTION = "featurelens_prefix"
MIN_PREFIX = 32  #: shorter shared prefixes are not worth a cache entry

#: set while one unpadded row continues a cache this module built
_continuing: ContextVar[bool] = ContextVar("featurelens_prefix_continuing", default=False)


@dataclass
class Prefix:
    """A prefix run once: its token ids, per-layer keys and values, last hidden states."""

    ids: tuple[int, ...]
    layers: list[tuple[Any, Any]]
    hidden: Any  #: [P, d]: the final hidden states, read for prompt log-probs in the prefix


def common_length(a: list[int], b: list[int]) -> int:
    """How many leading ids ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
               dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """SDPA attention; for a row continuing a cache, two fused kernels instead of a mask."""
    import torch
    from transformers.integrations.sdpa_attention import (
        repeat_kv,
        sdpa_attention_forward,
    )

    q_len, kv_len = query.shape[2], key.shape[2]
    if (not _continuing.get() or q_len == 1 or kv_len <= q_len or query.shape[0] != 1
            or query.device.type != "cpu" or kwargs.get("softcap") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    past = kv_len - q_len
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    before, lse_before = flash(query, key[:, :, :past], value[:, :, :past], 0.0, False, scale=scaling)
    own, lse_own = flash(query, key[:, :, past:], value[:, :, past:], 0.0, True, scale=scaling)
    # softmax over all keys = the two partial softmaxes weighted by their shares of the mass
    share_own = torch.sigmoid(lse_own - lse_before)[..., None]
    out = torch.lerp(before, own, share_own.to(before.dtype))
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def _mask(*args: Any, **kwargs: Any) -> Any:
    """transformers' SDPA mask, skipped (``None``) where :func:`_attention` needs none."""
    from transformers.masking_utils import sdpa_mask

    return None if _continuing.get() else sdpa_mask(*args, **kwargs)


def install(model: Any) -> bool:
    """Give an SDPA model on the CPU the prefix-aware attention; False (and nothing
    changed) for other attention implementations or devices, which then run whole prompts."""
    from transformers import AttentionInterface, AttentionMaskInterface

    if getattr(model.config, "_attn_implementation", None) == ATTENTION:
        return True
    if model.config._attn_implementation != "sdpa" or next(model.parameters()).device.type != "cpu":
        return False
    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, _mask)
    model.set_attn_implementation(ATTENTION)
    return True


@contextmanager
def continuing() -> Iterator[None]:
    """Model calls inside are one unpadded row continuing a cache from :class:`PrefixCache`."""
    token = _continuing.set(True)
    try:
        yield
    finally:
        _continuing.reset(token)


def cache_keyword(module: Any) -> str:
    """The keyword a module's forward takes its cache by (transformers 5 renamed it)."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


class PrefixCache:
    """The last ``size`` prefixes run, most recently used kept. Safe to share between the
    provider's worker threads: one runs a missing prefix while the others wait for it."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple[int, ...], Prefix] = OrderedDict()
        self.hits = 0  #: requests that reused a stored prefix (tests, benchmarks)
        self._lock = threading.Lock()

    def get(self, model: Any, ids: list[int]) -> Prefix:
        """The prefix ``ids`` run through ``model`` (from the LRU when it is there)."""
        with self._lock:
            return self._get(model, ids)

    def _get(self, model: Any, ids: list[int]) -> Prefix:
        import torch
        from transformers import DynamicCache

        key = tuple(ids)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        device = next(model.parameters()).device
        cache = DynamicCache()
        base = model.base_model
        with torch.inference_mode():
            out = base(input_ids=torch.tensor([ids], device=device), use_cache=True,
                       **{cache_keyword(base): cache})
        found = Prefix(key, [(layer.keys, layer.values) for layer in cache.layers],
                       out.last_hidden_state[0])
        self._entries[key] = found
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return found


def fresh_cache(prefix: Prefix) -> Any:
    """A new DynamicCache holding the prefix; later tokens append without touching the prefix."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for index, (keys, values) in enumerate(prefix.layers):
        cache.update(keys, values, index)
    return cache


def continue_hidden(model: Any, prefix: Prefix, ids: list[int]) -> Any:
    """Final hidden states ``[T, d]`` of the whole prompt ``ids``: the prefix's stored, the
    suffix's computed after the prefix's cache."""
    import torch

    device = next(model.parameters()).device
    p = len(prefix.ids)
    base = model.base_model
    with torch.inference_mode(), continuing():
        out = base(input_ids=torch.tensor([ids[p:]], device=device),
                   position_ids=torch.arange(p, len(ids), device=device)[None], use_cache=True,
                   **{cache_keyword(base): fresh_cache(prefix)})
        return torch.cat([prefix.hidden, out.last_hidden_state[0]])
