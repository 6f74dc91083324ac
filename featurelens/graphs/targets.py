"""What a graph attributes: the top logits, chosen tokens, or logit differences.

Three forms, as ``featurelens graph --target`` takes them:

- none given: the most likely next tokens, in order of probability, until their
  cumulative probability reaches ``desired_probability`` (default 0.95), at most
  ``max_logits`` (default 10);
- ``TOKEN``: the logit of one token (the text must be exactly one token of the model);
- ``A-B``: the logit difference between two tokens (each side one token). A text that is
  one token *and* splits into two tokens at a ``-`` is read as the difference; write the
  single token alone (``--target=-``) for a token that is only a dash.

A logit target reads the demeaned unembedding row ``W_U[t] - mean(W_U)`` (a softmax is
unchanged by a shift common to all logits, so the mean carries no information) and is
weighted by its probability; a difference reads ``W_U[A] - W_U[B]`` and has weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from featurelens.core.errors import FeaturelensError

DEFAULT_PROBABILITY = 0.95
DEFAULT_MAX_LOGITS = 10


@dataclass(frozen=True)
class Target:
    """One attributed read-out at the last position."""

    label: str  #: the token's text, or "A-B"
    token_id: int | None  #: the token id (None for a difference)
    weight: float  #: probability (token) or 1 (difference): its share in influence
    value: float  #: probability (token) or the logit difference A - B
    direction: torch.Tensor  #: [d_model] read-out direction in the final-norm output
    plus: int | None = None
    minus: int | None = None

    def as_json(self) -> dict[str, Any]:
        if self.plus is not None:
            return {"token": self.label, "plus": self.plus, "minus": self.minus, "value": self.value,
                    "weight": self.weight}
        return {"token": self.label, "token_id": self.token_id, "probability": self.value,
                "weight": self.weight}


def single_token(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` when it is exactly one token, else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def parse_target(spec: str, tokenizer: Any) -> tuple[int, int | None]:
    """``(token, None)`` for a token target, ``(plus, minus)`` for ``"A-B"``."""
    if not isinstance(spec, str) or spec == "":
        raise FeaturelensError(
            "A --target is empty; pass one token (--target ' Paris') or a difference of two (--target ' Paris- London').")
    for cut in range(1, len(spec) - 1):
        if spec[cut] != "-":
            continue
        plus, minus = single_token(tokenizer, spec[:cut]), single_token(tokenizer, spec[cut + 1:])
        if plus is not None and minus is not None:
            if plus == minus:
                raise FeaturelensError(
                    f"--target {spec!r} subtracts a token from itself; name two different tokens.")
            return plus, minus
    token = single_token(tokenizer, spec)
    if token is not None:
        return token, None
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(spec, add_special_tokens=False))
    raise FeaturelensError(
        f"--target {spec!r} is neither one token of this model nor 'A-B' with one token on each "
        f"side (it is {len(pieces)} tokens: {pieces[:6]}); pass a single token, e.g. its first piece.")


def resolve_targets(specs: Sequence[str] | None, *, logits: torch.Tensor, unembed: torch.Tensor,
                    tokenizer: Any, desired_probability: float = DEFAULT_PROBABILITY,
                    max_logits: int = DEFAULT_MAX_LOGITS) -> list[Target]:
    """The targets named by ``specs`` (or the salient logits when ``specs`` is empty).

    ``logits [V]`` are the real model's logits at the last position, ``unembed [V, d]``
    its unembedding.
    """
    if not 0 < desired_probability <= 1:
        raise FeaturelensError(
            f"The target probability must be in (0, 1], got {desired_probability}; 0.95 is usual.")
    if max_logits < 1:
        raise FeaturelensError(f"--max-logits must be at least 1, got {max_logits}.")
    logits = logits.to(torch.float32)
    probs = torch.softmax(logits, dim=-1)
    mean = unembed.mean(dim=0)

    def token_target(token: int) -> Target:
        if not 0 <= token < unembed.shape[0]:
            raise FeaturelensError(f"Token id {token} is outside the vocabulary (0..{unembed.shape[0] - 1}).")
        return Target(tokenizer.decode([token]), token, float(probs[token]), float(probs[token]),
                      unembed[token] - mean)

    if not specs:
        top_p, top_i = torch.topk(probs, min(max_logits, probs.shape[0]))
        count = int(torch.searchsorted(torch.cumsum(top_p, 0), torch.tensor(desired_probability))) + 1
        return [token_target(int(token)) for token in top_i[:min(count, len(top_i))]]
    targets = []
    for spec in specs:
        plus, minus = parse_target(spec, tokenizer)
        if minus is None:
            targets.append(token_target(plus))
        else:
            label = f"{tokenizer.decode([plus])}-{tokenizer.decode([minus])}"
            targets.append(Target(label, None, 1.0, float(logits[plus] - logits[minus]),
                                  unembed[plus] - unembed[minus], plus=plus, minus=minus))
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise FeaturelensError(f"--target names the same target twice ({labels}); name each once.")
    return targets
