"""The small interface every provider batch API implements, and how to find one.

A provider that offers a batch API claims the ``batch_api`` capability and declares
its client (``ProviderInfo.batch_client``); the interface is
:class:`~featurelens.core.host.protocols.BatchClient`. The built-in clients live beside
their providers (``OpenAIBatches`` in ``providers/openai_provider.py``,
``AnthropicBatches`` in ``providers/anthropic_provider.py``).

OpenAI: requests are written as JSONL to a temporary file, uploaded (purpose
``batch``), and a batch is created over it; results come back as an output file (and
an error file). Anthropic: Message Batches take the requests in the create call and
stream results back as JSONL. Both identify requests by ``custom_id``, which here is
the request's cache key, so results land straight in the response cache.

A client offers ``line(custom_id, request)``, ``submit(lines, label)``, ``state(id)``,
``results(id)`` and ``find(label, since, request_count)``: the last finds again a batch
whose create call may have succeeded unseen (:mod:`featurelens.llm.batch.intent`).
"""

from __future__ import annotations

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import BatchClient, BatchLimits, BatchState, LLMProvider, ProviderInfo
from featurelens.llm.providers import provider_info

__all__ = ["BatchClient", "BatchLimits", "BatchState", "Limits", "batch_client", "batch_providers"]


#: ``Limits`` is :class:`BatchLimits` under the name batch code here reads it by.
Limits = BatchLimits


def batch_client(provider: LLMProvider, info: ProviderInfo | None = None) -> BatchClient:
    """The batch client for ``provider``: its declaration's ``batch_client`` (the provider
    must also claim the ``batch_api`` capability). ``info``: the declaration when the caller
    has already read it (a stage's resolved LLM)."""
    make = (info or provider_info(provider.name)).batch_client
    if make is None or "batch_api" not in provider.capabilities:
        raise FeaturelensError(
            f"{provider.name}:{provider.model} has no batch API; drop --batch-api or use a model of a "
            f"provider that has one ({', '.join(batch_providers()) or 'none installed'}).")
    return make(provider)


def batch_providers() -> list[str]:
    """Registered providers whose declaration names a batch client, as ``name:``."""
    from featurelens.core.host.manager import get_registry

    components = get_registry().components["llm_provider"]
    return [f"{name}:" for name, component in sorted(components.items())
            if component.info is not None and component.info.batch_client is not None]
