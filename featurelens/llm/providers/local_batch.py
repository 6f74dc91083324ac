"""Several local-model requests in one pass: the shared prefix once, decode steps together.

Why this shape: on a CPU a prompt's forward pass is compute-bound, so running several
prompts as one padded batch costs at least as much as running them in turn (measured:
two padded rows of 1,500 tokens took 2.2-2.8x one row). What a batch can save is work
done twice and memory-bound steps: the instructions and few-shot turns every prompt
starts with are run once and their key/value cache reused by every row; each row's own
part is then run alone (no padding, positions continuing after the prefix); and the
decode steps of greedy generation run for every row at once over the rows' caches,
packed left-padded into one, with finished rows dropped. A row's numbers are those it
would get alone up to float rounding: greedy answers match the one-at-a-time path token
for token and log-probabilities to 1e-4 (tests/llm/test_local_batch.py).
"""

from __future__ import annotations

from typing import Any, Callable

from featurelens.core.protocols import LLMRequest, TokenLogprobs
from featurelens.llm.providers.answer_line import first_line

Decode = Callable[[int], str]
_SLICE = 256  # positions per pass through the output head
SHARE_AT = 0.5  #: share of the shortest prompt a common prefix must reach to be run once


def common_prefix(rows: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    if len(rows) < 2:
        return 0
    limit = min(len(r) for r in rows) - 1
    n = 0
    first = rows[0]
    while n < limit and all(r[n] == first[n] for r in rows[1:]):
        n += 1
    return n


def _top(decode: Decode, indices: list[int], values: list[float]) -> dict[str, float]:
    """Top alternatives by text; ids that decode alike (byte fragments) keep the likeliest."""
    top: dict[str, float] = {}
    for index, value in zip(indices, values):
        top.setdefault(decode(index), value)
    return top


def _with_cache(module: Any, cache: Any) -> dict[str, Any]:
    """The keyword a module's forward takes its key/value cache by (transformers 5 renamed it)."""
    import inspect

    name = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": True}


def _prefix_cache(model: Any, rows: list[list[int]]) -> tuple[Any, Any, int]:
    """The shared prefix's hidden states [P, d] and per-layer keys/values, run once, when
    it is at least :data:`SHARE_AT` of the shortest prompt: after a cached prefix the
    attention needs an explicit mask, measured about 60 % slower than the causal kernel
    on a CPU, so a short prefix costs more than it saves."""
    import torch
    from transformers import DynamicCache

    prefix = common_prefix(rows)
    if not prefix or prefix < SHARE_AT * min(len(r) for r in rows):
        return None, None, 0
    device = next(model.parameters()).device
    cache = DynamicCache()
    base = model.base_model
    out = base(input_ids=torch.tensor([rows[0][:prefix]], device=device), **_with_cache(base, cache))
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    return out.last_hidden_state[0], layers, prefix


def _run_row(model: Any, row: list[int], prefix: int, layers: Any) -> tuple[Any, Any]:
    """A row's own tokens after the cached prefix: its hidden states [T - P, d] and cache."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers or []):
        cache.update(keys, values, index)  # later updates concatenate: the prefix is not changed
    base = model.base_model
    positions = torch.arange(prefix, len(row), device=device)[None]
    out = base(input_ids=torch.tensor([row[prefix:]], device=device), position_ids=positions,
               **_with_cache(base, cache))
    return out.last_hidden_state[0], cache


def _packed(caches: list[Any], lengths: list[int]) -> tuple[Any, Any]:
    """Per-row caches as one batch cache, left-padded with masked zeros, and its mask."""
    import torch
    from transformers import DynamicCache

    width = max(lengths)
    first = caches[0].layers[0].keys
    mask = torch.zeros((len(caches), width), dtype=torch.long, device=first.device)
    for b, n in enumerate(lengths):
        mask[b, width - n:] = 1
    packed = DynamicCache()
    for index in range(len(caches[0].layers)):
        keys, values = [], []
        for cache, n in zip(caches, lengths):
            layer = cache.layers[index]
            pad = (0, 0, width - n, 0)  # last dim untouched, sequence dim padded on the left
            keys.append(torch.nn.functional.pad(layer.keys, pad))
            values.append(torch.nn.functional.pad(layer.values, pad))
        packed.update(torch.cat(keys), torch.cat(values), index)
    return packed, mask


def _row_logprobs(head: Any, hidden: Any, ids: list[int], k: int, decode: Decode) -> list[TokenLogprobs]:
    """Every position's chosen and top-``k`` log-probabilities from its hidden states."""
    import torch

    out = [TokenLogprobs(decode(ids[0]), None, {})]
    target = torch.tensor(ids, device=hidden.device)
    for start in range(0, hidden.shape[0] - 1, _SLICE):
        stop = min(start + _SLICE, hidden.shape[0] - 1)
        logp = torch.log_softmax(head(hidden[start:stop]).float(), dim=-1)
        nxt = target[start + 1:stop + 1]
        chosen = logp.gather(1, nxt[:, None])[:, 0].tolist()
        values, indices = logp.topk(min(k, logp.shape[-1]), dim=-1)
        for j, token in enumerate(nxt.tolist()):
            out.append(TokenLogprobs(decode(token), chosen[j], _top(decode, indices[j].tolist(),
                                                                     values[j].tolist())))
    return out


def prompt_logprobs(model: Any, rows: list[list[int]], ks: list[int],
                    decode: Decode) -> list[list[TokenLogprobs]]:
    """Prompt log-probabilities of several prompts, their shared prefix run once."""
    import torch

    with torch.inference_mode():
        prefix_hidden, layers, prefix = _prefix_cache(model, rows)
        head = model.get_output_embeddings()
        results = []
        for row, k in zip(rows, ks):
            own, _ = _run_row(model, row, prefix, layers)
            full = own if prefix_hidden is None else torch.cat([prefix_hidden, own])
            results.append(_row_logprobs(head, full, row, k, decode))
    return results


def generate_greedy(tokenizer: Any, model: Any, rows: list[list[int]], requests: list[LLMRequest],
                    decode: Decode, eos_ids: set[int]) -> list[tuple[str, list[int], list[TokenLogprobs]]]:
    """Greedy answers of several prompts, decoded together; each row keeps its own
    ``max_tokens``, ``top_logprobs`` and ``stop_at_newline``, and stops at an end token."""
    import torch

    n = len(rows)
    with torch.inference_mode():
        _, layers, prefix = _prefix_cache(model, rows)
        head = model.get_output_embeddings()
        caches, last = [], []
        for row in rows:
            hidden, cache = _run_row(model, row, prefix, layers)
            caches.append(cache)
            last.append(hidden[-1])
        logits = head(torch.stack(last)).float()  # [B, V]
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:  # what the model's own forward does after its head (Gemma 2)
            logits = torch.tanh(logits / cap) * cap
        cache, mask = _packed(caches, [len(r) for r in rows])
        positions = torch.tensor([len(r) for r in rows], device=logits.device)
        outs: list[list[int]] = [[] for _ in rows]
        logprobs: list[list[TokenLogprobs]] = [[] for _ in rows]
        active = [b for b in range(n) if requests[b].max_tokens > 0]  # batch row j is request active[j]
        if len(active) < n:
            cache.batch_select_indices(torch.tensor(active, device=logits.device))
            logits, mask, positions = logits[active], mask[active], positions[active]
        while active:
            chosen = logits.argmax(dim=-1)
            logp = torch.log_softmax(logits, dim=-1) if any(requests[b].top_logprobs for b in active) else None
            keep = []
            for j, b in enumerate(active):
                token = int(chosen[j])
                outs[b].append(token)
                request = requests[b]
                if request.top_logprobs and logp is not None:
                    values, indices = logp[j].topk(request.top_logprobs)
                    logprobs[b].append(TokenLogprobs(decode(token), float(logp[j, token]),
                                                     _top(decode, indices.tolist(), values.tolist())))
                done = (token in eos_ids or len(outs[b]) >= request.max_tokens or
                        (request.stop_at_newline and
                         first_line(tokenizer.decode(outs[b], skip_special_tokens=True))[1]))
                if not done:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                index = torch.tensor(keep, device=logits.device)
                cache.batch_select_indices(index)
                chosen, mask, positions = chosen[index], mask[index], positions[index]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=mask.device)], dim=1)
            out = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions[:, None],
                        **_with_cache(model, cache))
            logits = out.logits[:, -1].float()
            positions = positions + 1
    results = []
    eos = tokenizer.eos_token_id
    for b, request in enumerate(requests):
        ids = outs[b]
        if eos is not None and eos in ids:
            ids = ids[:ids.index(eos)]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if request.stop_at_newline:
            text = first_line(text)[0]
        results.append((text, ids, logprobs[b][:len(ids)] if request.top_logprobs else []))
    return results
