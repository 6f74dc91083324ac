"""Split a batch of local requests into passes the model can run together.

Prompt log-probabilities and greedy generation are batched separately (a request that
asks for both takes part in both); sampled requests (temperature > 0) are answered one
at a time, since a batch would draw different random numbers than the request alone.
Prompts are sorted by length so rows of similar length share a pass, and a pass holds
at most ``batch_tokens`` padded tokens, which bounds its memory. A pass that fails
fails only its own requests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from featurelens.core.protocols import LLMRequest, LLMResponse, TokenLogprobs
from featurelens.llm.providers import local_batch


def passes(lengths: dict[int, int], batch_tokens: int) -> list[list[int]]:
    """Request indices grouped by length, each group's rows x longest row <= batch_tokens
    (a single longer prompt still gets a pass of its own)."""
    groups: list[list[int]] = []
    for index in sorted(lengths, key=lambda i: lengths[i]):
        group = groups[-1] if groups else None
        if group and (len(group) + 1) * lengths[index] <= batch_tokens:
            group.append(index)
        else:
            groups.append([index])
    return groups


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The tokens generation stops at: the generation config's, as ``generate`` does."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids if i is not None}


def answer_batch(tokenizer: Any, model: Any, requests: list[LLMRequest], *, batch_tokens: int,
                 prompt_ids: Callable[[LLMRequest], list[int]],
                 one: Callable[[LLMRequest], LLMResponse]) -> list[Any]:
    """One answer (a response, or the exception it failed with) per request, in order."""
    decode = lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))
    answers: list[Any] = [None] * len(requests)
    rows: dict[int, list[int]] = {}
    for i, request in enumerate(requests):
        try:
            if request.temperature > 0 and request.max_tokens > 0:
                answers[i] = one(request)
            else:
                rows[i] = prompt_ids(request)
        except Exception as error:  # noqa: BLE001 - the engine classifies it per request
            answers[i] = error
    logprobs: dict[int, list[TokenLogprobs]] = {}
    wanted = {i: len(rows[i]) for i in rows if requests[i].prompt_logprobs}
    for group in passes(wanted, batch_tokens):
        try:
            found = local_batch.prompt_logprobs(model, [rows[i] for i in group],
                                                [requests[i].prompt_logprobs for i in group], decode)
        except Exception as error:  # noqa: BLE001
            for i in group:
                answers[i] = error
        else:
            logprobs.update(zip(group, found))
    generated: dict[int, tuple[str, list[int], list[TokenLogprobs]]] = {}
    wanted = {i: len(rows[i]) for i in rows if requests[i].max_tokens > 0 and answers[i] is None}
    eos = _eos_ids(tokenizer, model)
    for group in passes(wanted, batch_tokens):
        try:
            found = local_batch.generate_greedy(tokenizer, model, [rows[i] for i in group],
                                                [requests[i] for i in group], decode, eos)
        except Exception as error:  # noqa: BLE001
            for i in group:
                answers[i] = error
        else:
            generated.update(zip(group, found))
    for i in rows:
        if answers[i] is not None:
            continue
        text, out_ids, out_lp = generated.get(i, ("", [], []))
        answers[i] = LLMResponse(text=text, input_tokens=len(rows[i]), output_tokens=len(out_ids),
                                 output_logprobs=out_lp, prompt_logprobs=logprobs.get(i, []))
    return answers
