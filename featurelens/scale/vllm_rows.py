"""Requests as rows of a Ray Dataset for ``ray.data.llm``'s vLLM stage, and its output rows
back as :class:`LLMResponse`.

The driver applies the chat template and tokenizes (the same way the ``local`` provider
does), so the engine sees exactly the tokens whose prompt log-probabilities the
simulation scorer reads, and the processor needs no chat-template or tokenize stage.
vLLM's log-probabilities arrive per position as ``{token_id: {logprob, rank, ...}}``;
after a trip through Arrow the ids may be strings and a struct may carry other rows'
ids as ``None``, so both are read here.
"""

from __future__ import annotations

from typing import Any, Callable

from featurelens.core.host.protocols import LLMRequest, LLMResponse, TokenLogprobs
from featurelens.llm.providers.answer_line import first_line
from featurelens.llm.providers.chat_text import chat_prompt_text

#: vLLM's default ``max_logprobs``: the most alternatives a position may ask for.
MAX_LOGPROBS = 20
INDEX = "featurelens_index"  #: our column: which request of the batch a row answers
ERROR = "__inference_error__"  #: ray.data.llm's per-row error column


def prompt_ids(tokenizer: Any, request: LLMRequest) -> list[int]:
    """The prompt's token ids: a raw ``prompt`` as is, ``messages`` through the chat template
    (continuing a final assistant turn), or plain turns for a model without one."""
    if request.prompt is not None:
        ids = tokenizer(request.prompt).input_ids
    else:
        ids = tokenizer(chat_prompt_text(tokenizer, request.messages), add_special_tokens=False).input_ids
    return list(ids) or [tokenizer.bos_token_id or 0]


def request_row(index: int, tokenizer: Any, request: LLMRequest) -> dict[str, Any]:
    """One Dataset row: our index, the prompt and its ids, and vLLM ``SamplingParams`` fields.

    Every row carries every key (``None`` when unused) so rows of one batch share one
    Arrow schema. vLLM generates at least one token, so a request for none asks for one
    and :func:`response_from_row` drops it.
    """
    ids = prompt_ids(tokenizer, request)
    return {
        INDEX: index,
        "prompt": tokenizer.decode(ids),
        "tokenized_prompt": ids,
        "sampling_params": {
            "temperature": float(request.temperature),
            "max_tokens": max(1, int(request.max_tokens)),
            "logprobs": min(MAX_LOGPROBS, request.top_logprobs) if request.top_logprobs else None,
            "prompt_logprobs": min(MAX_LOGPROBS, request.prompt_logprobs) if request.prompt_logprobs else None,
            "structured_outputs": {"json_object": True} if request.json_output else None,
        },
    }


class RowError(RuntimeError):
    """The engine failed this row (``__inference_error__``); only its request fails."""


def _entries(position: Any) -> dict[int, dict[str, Any]]:
    """One position's ``{token_id: info}``, ids as ints, absent (``None``) entries left out."""
    if not position:
        return {}
    return {int(key): dict(info) for key, info in dict(position).items() if info is not None}


def _logprobs_at(position: Any, chosen: int, k: int, decode: Callable[[int], str]) -> TokenLogprobs:
    """The chosen token, its log-prob and the ``k`` likeliest alternatives by text."""
    entries = _entries(position)
    ranked = sorted(entries.items(), key=lambda item: (item[1].get("rank") or 10**9, -float(item[1]["logprob"])))
    top: dict[str, float] = {}
    for token, info in ranked[:k]:
        top.setdefault(decode(token), float(info["logprob"]))  # ids that decode alike: likeliest
    mine = entries.get(chosen)
    return TokenLogprobs(decode(chosen), None if mine is None else float(mine["logprob"]), top)


def response_from_row(row: dict[str, Any], request: LLMRequest,
                      decode: Callable[[int], str]) -> LLMResponse:
    """An :class:`LLMResponse` from one output row of the vLLM stage, or :class:`RowError`."""
    error = row.get(ERROR)
    if error:
        raise RowError(f"vLLM could not answer this request: {str(error).splitlines()[0]}")
    ids = [int(i) for i in row.get("prompt_token_ids") or []]
    prompt_lp: list[TokenLogprobs] = []
    if request.prompt_logprobs:
        positions = list(row.get("prompt_logprobs") or [])
        if len(positions) != len(ids):
            raise RowError(f"vLLM returned {len(positions)} prompt log-prob positions for "
                           f"{len(ids)} prompt tokens")
        k = min(MAX_LOGPROBS, request.prompt_logprobs)
        prompt_lp = [TokenLogprobs(decode(ids[0]), None, {})] + [
            _logprobs_at(positions[i], ids[i], k, decode) for i in range(1, len(ids))]
    if request.max_tokens <= 0:  # asked for no output: the one token vLLM needs is not the answer
        return LLMResponse(text="", input_tokens=len(ids), output_tokens=0, prompt_logprobs=prompt_lp)
    generated = [int(i) for i in row.get("generated_tokens") or []]
    text = str(row.get("generated_text") or "")
    output_lp: list[TokenLogprobs] = []
    if request.top_logprobs:
        k = min(MAX_LOGPROBS, request.top_logprobs)
        output_lp = [_logprobs_at(position, token, k, decode)
                     for position, token in zip(row.get("logprobs") or [], generated)]
    if request.stop_at_newline:  # the local provider's rule (answer_line.first_line)
        text = first_line(text)[0]
    return LLMResponse(text=text, input_tokens=int(row.get("num_input_tokens") or len(ids)),
                       output_tokens=int(row.get("num_generated_tokens") or len(generated)),
                       output_logprobs=output_lp, prompt_logprobs=prompt_lp)
