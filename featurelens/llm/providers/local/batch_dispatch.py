"""Split a batch of local requests into the ones decoded together and the ones answered alone.

Greedy generation (temperature 0, no prompt log-probs) is what gains from a batch: its
decode steps are memory-bound, so rows of similar length are decoded together
(:mod:`.decode`), each prompt still run alone. Everything else is answered by the
one-at-a-time path, which is then the same computation as without a batch: prompt
log-probs (a compute-bound pass over the prompt, which a batch could only pad or mask:
profiled slower on a CPU), sampled requests (a batch would draw other random numbers),
and models whose greedy ``generate`` applies logits processors. Prompts are sorted by
length so rows of similar length share a pass, and a pass holds at most
``batch_tokens`` prompt tokens (rows x longest row), which bounds its cache. A pass that
fails fails only its own requests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from featurelens.core.host.protocols import LLMRequest, LLMResponse
from featurelens.llm.providers.local import decode as local_decode
from featurelens.llm.providers.local.prefix import Prefix


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


def decoded_together(request: LLMRequest) -> bool:
    """Whether a request is greedy generation alone, the kind a batch decodes together."""
    return request.max_tokens > 0 and request.temperature <= 0 and not request.prompt_logprobs


def answer_batch(tokenizer: Any, model: Any, requests: list[LLMRequest], *, batch_tokens: int,
                 prompt_ids: Callable[[LLMRequest], list[int]],
                 one: Callable[[LLMRequest], LLMResponse],
                 prefix: Callable[[LLMRequest, list[int]], Prefix | None] | None = None) -> list[Any]:
    """One answer (a response, or the exception it failed with) per request, in order.
    ``prefix`` gives a request's stored shared prefix, as the one-at-a-time path uses it."""
    decode = lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))
    answers: list[Any] = [None] * len(requests)
    rows: dict[int, list[int]] = {}
    together = local_decode.plain_greedy(model)
    for i, request in enumerate(requests):
        try:
            if together and decoded_together(request):
                rows[i] = prompt_ids(request)
            else:
                answers[i] = one(request)
        except Exception as error:  # noqa: BLE001 - the engine classifies it per request
            answers[i] = error
    for group in passes({i: len(rows[i]) for i in rows}, batch_tokens):
        try:
            prefixes = [prefix(requests[i], rows[i]) for i in group] if prefix is not None else None
            found = local_decode.greedy(tokenizer, model, [rows[i] for i in group],
                                        [requests[i] for i in group], decode, prefixes)
        except Exception as error:  # noqa: BLE001
            for i in group:
                answers[i] = error
        else:
            for i, (text, out_ids, out_lp) in zip(group, found):
                answers[i] = LLMResponse(text=text, input_tokens=len(rows[i]), output_tokens=len(out_ids),
                                         output_logprobs=out_lp, prompt_logprobs=[])
    return answers
