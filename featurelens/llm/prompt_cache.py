"""Which input tokens a provider's prompt cache serves, and whether reaching its minimum pays.

Every prompt featurelens sends starts with its shared part (instructions, few-shot
turns) and ends with the feature's data, so after the first request of a run the
shared prefix is what a prompt cache can serve. Providers only cache long prefixes;
each declares its rule (``ProviderInfo.prompt_cache``: the minimum, and the step in
which longer prefixes are served; :mod:`featurelens.llm.providers.declarations` for
the built-ins). A provider that declares none (local, vLLM) caches for free or not at
all, and nothing is discounted.

:func:`padding_pays` answers the other half of the question: lengthening a short
shared prefix to the minimum (more few-shot material) turns ``prefix`` full-price
tokens into ``minimum`` cached-price ones, which pays only when
``minimum * cached_price < prefix * input_price``.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.core.host.protocols import PromptCache
from featurelens.llm.pricing import Price
from featurelens.llm.providers import provider_info
from featurelens.llm.request_tokens import RequestTokens


def cache_rule(provider: str, model: str) -> PromptCache | None:
    """The provider's declared prompt-cache rule for ``model`` (``None``: nothing is discounted)."""
    return provider_info(provider).cache_rule(model)


def minimum_prefix(provider: str, model: str) -> int | None:
    """The shortest prefix the provider caches, or ``None`` when it discounts nothing."""
    rule = cache_rule(provider, model)
    return None if rule is None else rule.minimum


def cached_tokens(provider: str, model: str, tokens: RequestTokens) -> int:
    """Input tokens of one request billed at the cached rate once the cache is warm."""
    rule = cache_rule(provider, model)
    return 0 if rule is None else rule.cached(tokens.prefix)


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
