"""When a labeling command goes through the provider's batch API without being asked.

Batch APIs halve the bill but answer within hours, not seconds. For a few hundred
features the wait is not worth it; for tens of thousands the saving is real money.
``explain``, ``score`` and ``label`` therefore use the batch API on their own once a
job reaches ``--batch-threshold`` items on a provider that has one, say so, and take
``--no-batch-api`` to run live anyway (``--batch-api`` forces it below the threshold).
"""

from __future__ import annotations

from typing import Any

from featurelens.llm.providers import provider_info
from featurelens.registry.components import split_llm_spec

#: Items (features to explain, explanations to score) from which the batch API is the default.
DEFAULT_THRESHOLD = 10_000


def has_batch_api(llm: Any, provider_options: dict[str, Any] | None = None) -> bool:
    """True when ``llm`` (``provider:model``, or a job's resolved
    :class:`~featurelens.llm.stage.LLMChoice`) is served by a provider that declares a batch
    client, at its own endpoint (a custom ``base_url`` usually has no batch API)."""
    options = provider_options or {}
    info = provider_info(split_llm_spec(llm)[0]) if isinstance(llm, str) else llm.info
    return info.has_batch_api(options) and not options.get("base_url")


def choose_batch(flag: bool | None, items: int, threshold: int, llm: Any,
                 provider_options: dict[str, Any] | None = None) -> tuple[bool, str | None]:
    """``(use the batch API, a note to print)`` from the flag, the job size and the provider
    (``llm``: ``provider:model`` or a resolved ``LLMChoice``)."""
    if flag is not None:
        return flag, None
    if items >= threshold and has_batch_api(llm, provider_options):
        return True, (f"{items:,} items >= --batch-threshold {threshold:,}: submitting through the "
                      f"{split_llm_spec(llm)[0] if isinstance(llm, str) else llm.provider} batch API (half price, answers within 24 h); pass "
                      "--no-batch-api to run live.")
    return False, None
