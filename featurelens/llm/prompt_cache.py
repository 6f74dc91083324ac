"""Which input tokens a provider's prompt cache serves, and whether reaching its minimum pays.

Every prompt featurelens sends starts with its shared part (instructions, few-shot
turns) and ends with the feature's data, so after the first request of a run the
shared prefix is what a prompt cache can serve. Providers only cache long prefixes:

- OpenAI caches automatically once a prompt is at least 1,024 tokens long, in steps
  of 128 tokens of the longest prefix seen before; nothing to mark.
- Anthropic caches what ``cache_control`` marks (the Anthropic provider marks the
  shared prefix) when the marked prefix reaches the model's minimum: 1,024 tokens for
  Sonnet 4.5 / Opus 4.1 and older Sonnets, 2,048 for Haiku 3 / 3.5, 4,096 for Haiku 4.5
  and Opus 4.5+. Writing the cache costs 1.25x input once per five minutes, which is
  negligible over a long run and left out here.
- Other providers (local, vLLM) cache for free or not at all; nothing is discounted.

:func:`padding_pays` answers the other half of the question: lengthening a short
shared prefix to the minimum (more few-shot material) turns ``prefix`` full-price
tokens into ``minimum`` cached-price ones, which pays only when
``minimum * cached_price < prefix * input_price``.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.llm.pricing import Price
from featurelens.llm.request_tokens import RequestTokens

OPENAI_MINIMUM = 1024
OPENAI_STEP = 128
#: Anthropic's minimum cacheable prefix by model-name fragment (first match wins).
ANTHROPIC_MINIMUMS = (("haiku-4", 4096), ("opus-4-5", 4096), ("opus-4-6", 4096),
                      ("haiku", 2048), ("", 1024))


def minimum_prefix(provider: str, model: str) -> int | None:
    """The shortest prefix the provider caches, or ``None`` when it discounts nothing."""
    if provider == "openai":
        return OPENAI_MINIMUM
    if provider == "anthropic":
        return next(size for fragment, size in ANTHROPIC_MINIMUMS if fragment in model)
    return None


def cached_tokens(provider: str, model: str, tokens: RequestTokens) -> int:
    """Input tokens of one request billed at the cached rate once the cache is warm."""
    minimum = minimum_prefix(provider, model)
    if minimum is None or tokens.prefix < minimum:
        return 0
    if provider == "openai":
        return minimum + (tokens.prefix - minimum) // OPENAI_STEP * OPENAI_STEP
    return tokens.prefix


@dataclass(frozen=True)
class PaddingVerdict:
    """Whether lengthening a shared prefix to the cache minimum would lower the bill."""

    prefix: int
    minimum: int | None
    pays: bool
    saving_per_request: float  #: input-token equivalents saved (negative: it would cost more)


def padding_pays(provider: str, model: str, prefix: int, price: Price | None) -> PaddingVerdict:
    """Compare ``prefix`` tokens at full price with the minimum at the cached price."""
    minimum = minimum_prefix(provider, model)
    if minimum is None or price is None or price.input <= 0 or prefix >= minimum:
        return PaddingVerdict(prefix, minimum, False, 0.0)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    saving = prefix - minimum * cached_rate / price.input
    return PaddingVerdict(prefix, minimum, saving > 0, saving)
