"""The two provider batch APIs behind one small interface.

OpenAI: requests are written as JSONL to a temporary file, uploaded (purpose
``batch``), and a batch is created over it; results come back as an output file (and
an error file). Anthropic: Message Batches take the requests in the create call and
stream results back as JSONL. Both identify requests by ``custom_id``, which here is
the request's cache key, so results land straight in the response cache.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import Any, AsyncIterator

from featurelens.core.protocols import LLMProvider, LLMRequest, LLMResponse


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


class OpenAIBatches:
    """OpenAI Batch API over ``/v1/chat/completions`` (or ``/v1/completions``)."""

    limits = Limits(50_000, 190 * 2**20)
    _FINISHED = {"completed", "expired", "cancelled", "failed"}

    def __init__(self, provider: LLMProvider):
        self.provider = provider
        self.client = provider.client  # type: ignore[attr-defined]

    def line(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        from featurelens.llm.providers.openai_provider import chat_body, completion_body

        if request.prompt_logprobs:
            return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions",
                    "body": completion_body(self.provider.model, request)}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                "body": chat_body(self.provider.model, request,
                                  getattr(self.provider, "prefix_cache_key", False))}

    async def submit(self, lines: list[dict[str, Any]]) -> str:
        endpoint = lines[0]["url"]
        with tempfile.TemporaryFile("w+b") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
            handle.seek(0)
            uploaded = await self.client.files.create(file=("featurelens-batch.jsonl", handle),
                                                      purpose="batch")
        batch = await self.client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,
                                                 completion_window="24h")
        return batch.id

    async def state(self, batch_id: str) -> BatchState:
        batch = await self.client.batches.retrieve(batch_id)
        counts = batch.request_counts
        text = f"{counts.completed}/{counts.total} done, {counts.failed} failed" if counts else ""
        return BatchState(batch.status, batch.status in self._FINISHED, text)

    async def results(self, batch_id: str) -> AsyncIterator[tuple[str, LLMResponse | None, str | None]]:
        from featurelens.llm.providers.openai_provider import (response_from_chat,
                                                                    response_from_completion)

        batch = await self.client.batches.retrieve(batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                item = json.loads(raw)
                response = item.get("response") or {}
                body = response.get("body") or {}
                if item.get("error") or response.get("status_code") != 200:
                    error = item.get("error") or body.get("error") or {}
                    yield item["custom_id"], None, (
                        f"HTTP {response.get('status_code')}: {error.get('message', error)}")
                elif body.get("object") == "text_completion":
                    yield item["custom_id"], response_from_completion(body), None
                else:
                    yield item["custom_id"], response_from_chat(body), None


class AnthropicBatches:
    """Anthropic Message Batches."""

    limits = Limits(100_000, 240 * 2**20)

    def __init__(self, provider: LLMProvider):
        self.provider = provider
        self.client = provider.client  # type: ignore[attr-defined]

    def line(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        from featurelens.llm.providers.anthropic_provider import message_params

        if request.prompt_logprobs or request.top_logprobs:
            raise ValueError("Anthropic models return no log-probabilities")
        return {"custom_id": custom_id, "params": message_params(self.provider.model, request)}

    async def submit(self, lines: list[dict[str, Any]]) -> str:
        batch = await self.client.messages.batches.create(requests=lines)
        return batch.id

    async def state(self, batch_id: str) -> BatchState:
        batch = await self.client.messages.batches.retrieve(batch_id)
        c = batch.request_counts
        text = (f"{c.succeeded} succeeded, {c.errored} errored, {c.processing} processing, "
                f"{c.expired} expired, {c.canceled} canceled")
        return BatchState(batch.processing_status, batch.processing_status == "ended", text)

    async def results(self, batch_id: str) -> AsyncIterator[tuple[str, LLMResponse | None, str | None]]:
        from featurelens.llm.providers.anthropic_provider import response_from_message

        async for entry in await self.client.messages.batches.results(batch_id):
            result = entry.result
            if result.type == "succeeded":
                yield entry.custom_id, response_from_message(result.message), None
            else:
                error = getattr(result, "error", None)
                detail = getattr(getattr(error, "error", None), "message", None) or result.type
                yield entry.custom_id, None, f"batch request {result.type}: {detail}"


CLIENTS = {"openai": OpenAIBatches, "anthropic": AnthropicBatches}


def batch_client(provider: LLMProvider) -> OpenAIBatches | AnthropicBatches:
    """The batch client for ``provider`` (it must claim the ``batch_api`` capability)."""
    from featurelens.core.errors import FeaturelensError

    factory = CLIENTS.get(provider.name)
    if factory is None or "batch_api" not in provider.capabilities:
        raise FeaturelensError(
            f"{provider.name}:{provider.model} has no batch API; drop --batch-api or use an "
            "openai: or anthropic: model.")
    return factory(provider)
