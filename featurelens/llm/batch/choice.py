"""When a labeling command goes through the provider's batch API without being asked.

Batch APIs halve the bill but answer within hours, not seconds. For a few hundred
features the wait is not worth it; for tens of thousands the saving is real money.
``explain``, ``score`` and ``label`` therefore use the batch API on their own once a
job reaches ``--batch-threshold`` items on a provider that has one, say so, and take
``--no-batch-api`` to run live anyway (``--batch-api`` forces it below the threshold).
"""

from __future__ import annotations

from typing import Any

from featurelens.registry.components import split_llm_spec

#: Items (features to explain, explanations to score) from which the batch API is the default.
DEFAULT_THRESHOLD = 10_000
#: Providers with a batch API at their own endpoint (a custom base_url usually has none).
BATCH_PROVIDERS = frozenset({"openai", "anthropic"})


def has_batch_api(llm: str, provider_options: dict[str, Any] | None = None) -> bool:
    """True when ``llm`` is served by a provider whose batch API featurelens can use."""
    provider, _ = split_llm_spec(llm)
    return provider in BATCH_PROVIDERS and not (provider_options or {}).get("base_url")


def choose_batch(flag: bool | None, items: int, threshold: int, llm: str,
                 provider_options: dict[str, Any] | None = None) -> tuple[bool, str | None]:
    """``(use the batch API, a note to print)`` from the flag, the job size and the provider."""
    if flag is not None:
        return flag, None
    if items >= threshold and has_batch_api(llm, provider_options):
        return True, (f"{items:,} items >= --batch-threshold {threshold:,}: submitting through the "
                      f"{split_llm_spec(llm)[0]} batch API (half price, answers within 24 h); pass "
                      "--no-batch-api to run live.")
    return False, None
