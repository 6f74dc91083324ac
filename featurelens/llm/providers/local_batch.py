"""Several local-model requests in one pass: shared prefix once, suffixes right-padded.

Why: on a CPU a long prompt's forward pass is compute-bound, so what batching can save
is work done twice (the instructions and few-shot turns every prompt starts with) and
the memory-bound decode steps (one step serves every row). The shared prefix of a
batch is run once and its key/value cache repeated per row; the rest of each prompt is
right-padded, so a pad position only ever attends to real tokens before it (no fully
masked attention row) and real positions never see a pad (causal mask plus attention
mask). Positions are given explicitly, so a row's numbers are those it would get alone;
greedy answers match the one-at-a-time path token for token, and log-probabilities
match to float rounding (tests/llm/test_local_batch.py).
"""

from __future__ import annotations

from typing import Any, Callable

from featurelens.core.protocols import LLMRequest, TokenLogprobs

Decode = Callable[[int], str]
_SLICE = 256  # positions per pass through the output head


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


def _prefill(model: Any, rows: list[list[int]]) -> tuple[Any, Any, Any, int]:
    """Run the rows: returns (suffix hidden states [B, L, d], prefix hidden [P, d] or None,
    the key/value cache, P). Rows are right-padded after their shared prefix."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    prefix = common_prefix(rows)
    cache = DynamicCache()  # filled in place by every forward below
    prefix_hidden = None
    base = model.base_model
    if prefix:
        out = base(input_ids=torch.tensor([rows[0][:prefix]], device=device), **_with_cache(base, cache))
        prefix_hidden = out.last_hidden_state[0]
        cache.batch_repeat_interleave(len(rows))
    width = max(len(r) for r in rows) - prefix
    ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), prefix + width), dtype=torch.long, device=device)
    mask[:, :prefix] = 1
    for b, row in enumerate(rows):
        suffix = row[prefix:]
        ids[b, :len(suffix)] = torch.tensor(suffix, device=device)
        mask[b, prefix:prefix + len(suffix)] = 1
    positions = torch.arange(prefix, prefix + width, device=device).expand(len(rows), width)
    out = base(input_ids=ids, attention_mask=mask, position_ids=positions, **_with_cache(base, cache))
    return out.last_hidden_state, prefix_hidden, (cache, mask), prefix


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
    """Prompt log-probabilities of several prompts from one forward pass."""
    import torch

    with torch.inference_mode():
        hidden, prefix_hidden, _, prefix = _prefill(model, rows)
        head = model.get_output_embeddings()
        results = []
        for b, row in enumerate(rows):
            own = hidden[b, :len(row) - prefix]
            full = own if prefix_hidden is None else torch.cat([prefix_hidden, own])
            results.append(_row_logprobs(head, full, row, ks[b], decode))
    return results


def generate_greedy(tokenizer: Any, model: Any, rows: list[list[int]], requests: list[LLMRequest],
                    decode: Decode, eos_ids: set[int]) -> list[tuple[str, list[int], list[TokenLogprobs]]]:
    """Greedy answers of several prompts, decoded together; each row keeps its own
    ``max_tokens``, ``top_logprobs`` and ``stop_at_newline``, and stops at an end token."""
    import torch

    n = len(rows)
    with torch.inference_mode():
        hidden, _, (cache, mask), prefix = _prefill(model, rows)
        head = model.get_output_embeddings()
        last = torch.tensor([len(r) - prefix - 1 for r in rows], device=hidden.device)
        logits = head(hidden[torch.arange(n, device=hidden.device), last]).float()  # [B, V]
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:  # what the model's own forward does after its head (Gemma 2)
            logits = torch.tanh(logits / cap) * cap
        positions = torch.tensor([len(r) for r in rows], device=hidden.device)
        outs: list[list[int]] = [[] for _ in rows]
        logprobs: list[list[TokenLogprobs]] = [[] for _ in rows]
        live = [r.max_tokens > 0 for r in requests]
        while True:
            chosen = logits.argmax(dim=-1)
            logp = torch.log_softmax(logits, dim=-1) if any(r.top_logprobs for r in requests) else None
            for b in range(n):
                if not live[b]:
                    continue
                token = int(chosen[b])
                outs[b].append(token)
                request = requests[b]
                if request.top_logprobs and logp is not None:
                    values, indices = logp[b].topk(request.top_logprobs)
                    logprobs[b].append(TokenLogprobs(decode(token), float(logp[b, token]),
                                                     _top(decode, indices.tolist(), values.tolist())))
                if (token in eos_ids or len(outs[b]) >= request.max_tokens or
                        (request.stop_at_newline and
                         "\n" in tokenizer.decode(outs[b], skip_special_tokens=True).lstrip())):
                    live[b] = False
            if not any(live):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=mask.device)], dim=1)
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
            text = text.lstrip().partition("\n")[0]
        results.append((text, ids, logprobs[b][:len(ids)] if request.top_logprobs else []))
    return results
