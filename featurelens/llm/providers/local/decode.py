"""Greedy answers of several local-model prompts: each prompt run alone, decode steps together.

Why this shape (profiled on 2 CPU cores, BENCHMARKS.md "Local models in batches, decode
steps shared"): a prompt's forward pass is compute-bound, so rows gain nothing from
sharing it, and padding one row to another's length or masking a shared prefix only adds
work. So each prompt is run alone, with the very call ``generate`` makes (the whole
prompt, or the suffix after a stored prefix), and its cache and first token are those of
the one-at-a-time path. A decode step is memory-bound: one token per row reads every
weight once, so several rows decoded together cost little more than one. The rows'
caches are packed left-padded into one cache that grows in place
(:mod:`.kv_buffer`: no copy of the cache per step), rows leave the batch when they
finish, and each keeps its own ``max_tokens``, ``top_logprobs`` and ``stop_at_newline``.
Answers match ``generate`` token for token (tests/llm/test_local_decode.py).
"""

from __future__ import annotations

from typing import Any, Callable

from featurelens.core.host.protocols import LLMRequest, TokenLogprobs
from featurelens.llm.providers.answer_line import first_line
from featurelens.llm.providers.local import prefix as local_prefix
from featurelens.llm.providers.local.logprobs import top_by_text

Decode = Callable[[int], str]
Answer = tuple[str, list[int], list[TokenLogprobs]]

#: generation-config settings under which greedy ``generate`` changes the logits before its
#: argmax; a model that sets any of them is answered one request at a time instead
_PROCESSORS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
               "bad_words_ids": None, "min_length": 0, "min_new_tokens": None, "suppress_tokens": None,
               "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
               "sequence_bias": None, "exponential_decay_length_penalty": None, "diversity_penalty": 0.0,
               "renormalize_logits": False, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "guidance_scale": None,
               "watermarking_config": None, "num_beams": 1}


def plain_greedy(model: Any) -> bool:
    """Whether the model's greedy ``generate`` is a bare argmax of its logits (no logits
    processor), which is what :func:`greedy` computes."""
    config = getattr(model, "generation_config", None)
    return all(getattr(config, name, default) in (default, None) for name, default in _PROCESSORS.items())


def eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The tokens generation stops at: the generation config's, as ``generate`` does."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids if i is not None}


def prefill(model: Any, row: list[int], prefix: local_prefix.Prefix | None = None) -> tuple[Any, list]:
    """Run one prompt as ``generate`` does before its first token: the next-token logits
    ``[V]`` (float32) and the per-layer ``(keys, values)`` of the whole prompt."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    start = len(prefix.ids) if prefix is not None else 0
    cache = local_prefix.fresh_cache(prefix) if prefix is not None else DynamicCache()
    ids = torch.tensor([row[start:]], device=device)
    kwargs = {local_prefix.cache_keyword(model): cache, "use_cache": True, "logits_to_keep": 1,
              "attention_mask": torch.ones((1, len(row)), dtype=torch.long, device=device),
              "position_ids": torch.arange(start, len(row), device=device)[None]}
    with torch.inference_mode():
        if prefix is None:
            out = model(input_ids=ids, **kwargs)
        else:
            with local_prefix.continuing():
                out = model(input_ids=ids, **kwargs)
    logits = out.logits[0, -1].to(dtype=torch.float32, copy=True)
    return logits, [(layer.keys, layer.values) for layer in cache.layers]


def _done(tokenizer: Any, request: LLMRequest, out: list[int], eos: set[int]) -> bool:
    if out[-1] in eos or len(out) >= request.max_tokens:
        return True
    return request.stop_at_newline and first_line(tokenizer.decode(out, skip_special_tokens=True))[1]


def greedy(tokenizer: Any, model: Any, rows: list[list[int]], requests: list[LLMRequest], decode: Decode,
           prefixes: list[local_prefix.Prefix | None] | None = None) -> list[Answer]:
    """Greedy answers of several prompts (token ids), decoded together: ``(text, ids, logprobs)``
    per row, as the one-at-a-time path gives them."""
    import torch

    from featurelens.llm.providers.local.kv_buffer import packed

    eos = eos_ids(tokenizer, model)
    prefixes = prefixes or [None] * len(rows)
    outs: list[list[int]] = [[] for _ in rows]
    logprobs: list[list[TokenLogprobs]] = [[] for _ in rows]
    active = [b for b in range(len(rows)) if requests[b].max_tokens > 0]  # batch row j is request active[j]
    if active:
        firsts, caches = [], []
        for b in active:
            logits, layers = prefill(model, rows[b], prefixes[b])
            firsts.append(logits)
            caches.append(layers)
        room = max(requests[b].max_tokens for b in active)
        with torch.inference_mode():
            cache, mask = packed(caches, room)
            del caches
            logits = torch.stack(firsts)
            positions = torch.tensor([len(rows[b]) for b in active], device=logits.device)
            keyword = local_prefix.cache_keyword(model)
            while active:
                chosen = logits.argmax(dim=-1)
                tokens = chosen.tolist()  # one read of the step's tokens, not one per row (a sync each on a GPU)
                keep = []
                for j, b in enumerate(active):
                    token = tokens[j]
                    outs[b].append(token)
                    request = requests[b]
                    if request.top_logprobs:
                        logp = torch.log_softmax(logits[j], dim=-1)
                        values, indices = logp.topk(request.top_logprobs)
                        logprobs[b].append(TokenLogprobs(decode(token), float(logp[token]),
                                                         top_by_text(decode, indices.tolist(), values.tolist())))
                    if not _done(tokenizer, request, outs[b], eos):
                        keep.append(j)
                if not keep:
                    break
                if len(keep) < len(active):  # finished rows leave the batch
                    index = torch.tensor(keep, device=logits.device)
                    for layer in cache.layers:
                        layer.batch_select_indices(index)
                    chosen, mask, positions = chosen[index], mask[index], positions[index]
                    active = [active[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                out = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions[:, None],
                            use_cache=True, logits_to_keep=1, **{keyword: cache})
                logits = out.logits[:, -1].to(dtype=torch.float32)
                positions = positions + 1
    return [_answer(tokenizer, request, ids, lp) for request, ids, lp in zip(requests, outs, logprobs)]


def _answer(tokenizer: Any, request: LLMRequest, ids: list[int], logprobs: list[TokenLogprobs]) -> Answer:
    """What the one-at-a-time path returns for these generated ids: cut at the model's end
    token, decoded, and cut to the answer line when asked."""
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[:ids.index(eos)]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if request.stop_at_newline:
        text = first_line(text)[0]
    return text, ids, logprobs[:len(ids)] if request.top_logprobs else []
