"""Labeling without an LLM: the ``offline`` provider and which LLM a job is recorded under.

Explainers and scorers that need no model (``token-lookup``, ``token-check``,
``embedding``) declare ``needs_llm = False``. Their jobs still run on the batch engine
(resume, failures, one transaction per feature), which wants a provider; they get
:class:`OfflineProvider`, which refuses every request, and their rows record
``llm = 'offline:none'`` whatever ``--llm`` said, so a label is never credited to a
model that did not write it and reruns with another ``--llm`` find the same rows.
"""

from __future__ import annotations

from typing import Any

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest, LLMResponse, ProviderInfo, needs_llm

featurelens_api = 1
__all__ = ["OFFLINE_LLM", "OfflineProvider", "effective_llm", "needs_llm", "record_chunk"]

#: The ``provider:model`` recorded for work done without an LLM.
OFFLINE_LLM = "offline:none"


#: Features read per chunk by a stage that needs no LLM. Each chunk costs a few queries
#: (its keys, its features, its windows, what is already done) whatever its size; an
#: offline label takes a fraction of a millisecond, so at 256 features those queries
#: cost as much as the labels. A chunk of 2,048 records is a few MB.
OFFLINE_CHUNK = 2048
#: Features read per chunk by a stage whose jobs ask an LLM (answers take far longer).
LLM_CHUNK = 256


def record_chunk(component: Any) -> int:
    """Features a stage of ``component`` reads per chunk (:data:`OFFLINE_CHUNK` when it
    needs no LLM)."""
    return LLM_CHUNK if needs_llm(component) else OFFLINE_CHUNK


def effective_llm(component: Any, llm: str) -> str:
    """The LLM a job of ``component`` is recorded under: ``llm``, or offline when it needs none."""
    return llm if needs_llm(component) else OFFLINE_LLM


class OfflineProvider:
    """A provider for jobs that make no requests; asked anyway, it says what to do."""

    name = "offline"
    key_env = None
    capabilities: frozenset[str] = frozenset()

    def __init__(self, model: str = "none", **options: Any):
        self.model = model

    async def complete(self, request: LLMRequest) -> LLMResponse:
        raise FeaturelensError(
            f"offline:{self.model} answers no LLM requests, and this {request.purpose} step needs "
            "one; pass --llm provider:model (local:smollm2, openai:gpt-4o-mini...).")


def _offline(model: str, **options: Any) -> OfflineProvider:
    return OfflineProvider(model, **options)


#: No capabilities, nothing to count or cache, and free.
OFFLINE = ProviderInfo(free=True)


@featurelens.hookimpl
def register_llm_providers(register) -> None:
    register("offline", _offline, description="no LLM: for explainers and scorers that need none "
             "(token-lookup, token-check, embedding); refuses any request", info=OFFLINE)
