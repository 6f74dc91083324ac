"""Prompt log-probabilities of a local model, computed only where the caller reads them.

Why: the output head and a log-softmax over the whole vocabulary at every prompt
position are a fifth of a simulation prompt's work on a CPU (SmolLM2: 49,152 outputs
per position), yet the simulation reads only the positions right after each separator.
A request's ``prompt_logprobs_after`` names that separator; every other position gets
its token with no log-prob and no alternatives. Where it is read, a position's numbers
are those of the full pass: the same hidden state through the same head and a
log-softmax over the full vocabulary.
"""

from __future__ import annotations

from typing import Any, Callable

from featurelens.core.host.protocols import TokenLogprobs

Decode = Callable[[int], str]
_SLICE = 256  # positions per pass through the output head


def wanted_positions(texts: list[str], after: str | None) -> list[int]:
    """Prompt indices (from 1) whose log-probs are wanted: every one when ``after`` is
    None; else each whose previous token ends with ``after``, and each whose own token
    holds it (a marker merged into the start of the next token by the tokenizer)."""
    if after is None:
        return list(range(1, len(texts)))
    return [j for j in range(1, len(texts)) if texts[j - 1].endswith(after) or after in texts[j]]


def top_by_text(decode: Decode, indices: list[int], values: list[float]) -> dict[str, float]:
    """Top alternatives by text; ids that decode alike (byte fragments) keep the likeliest."""
    top: dict[str, float] = {}
    for index, value in zip(indices, values):
        top.setdefault(decode(index), value)
    return top


def prompt_logprobs(head: Any, hidden: Any, ids: list[int], k: int, decode: Decode,
                    after: str | None = None) -> list[TokenLogprobs]:
    """Each position's token, and where wanted its log-prob and top ``k`` alternatives,
    from the prompt's final hidden states ``[T, d]``."""
    import torch

    texts = [decode(i) for i in ids]
    out = [TokenLogprobs(text, None, {}) for text in texts]
    wanted = wanted_positions(texts, after)
    with torch.inference_mode():
        for start in range(0, len(wanted), _SLICE):
            chunk = wanted[start:start + _SLICE]
            rows = hidden[chunk[0] - 1:chunk[-1]] if chunk[-1] - chunk[0] == len(chunk) - 1 else \
                hidden[torch.tensor([j - 1 for j in chunk], device=hidden.device)]
            logp = torch.log_softmax(head(rows).float(), dim=-1)
            nxt = torch.tensor([ids[j] for j in chunk], device=logp.device)
            chosen = logp.gather(1, nxt[:, None])[:, 0].tolist()
            values, indices = logp.topk(min(k, logp.shape[-1]), dim=-1)
            values_l, indices_l = values.tolist(), indices.tolist()
            for n, j in enumerate(chunk):
                out[j] = TokenLogprobs(texts[j], chosen[n], top_by_text(decode, indices_l[n], values_l[n]))
    return out
