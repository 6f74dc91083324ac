"""The small interface every provider batch API implements, and how to find one.

A provider that offers a batch API claims the ``batch_api`` capability and returns
its client from ``provider.batch_client()``; the built-in clients live beside their
providers (``OpenAIBatches`` in ``providers/openai_provider.py``, ``AnthropicBatches`` in ``providers/anthropic_provider.py``).

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

from dataclasses import dataclass
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMProvider


@dataclass(frozen=True)
class Limits:
    """Most requests and bytes one provider batch may hold (kept a little under the caps)."""

    requests: int
    bytes: int


@dataclass(frozen=True)
class BatchState:
    status: str  #: the provider's own word (in_progress, completed, ended...)
    finished: bool  #: results (possibly partial) can be collected
    counts: str = ""
    reason: str = ""  #: why the provider ended the batch early (a failed batch's errors)


def batch_client(provider: LLMProvider) -> Any:
    """The batch client for ``provider`` (it must claim the ``batch_api`` capability)."""
    make = getattr(provider, "batch_client", None)
    if make is None or "batch_api" not in provider.capabilities:
        raise FeaturelensError(
            f"{provider.name}:{provider.model} has no batch API; drop --batch-api or use an "
            "openai: or anthropic: model.")
    return make()
