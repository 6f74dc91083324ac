"""OpenAI's Batch API: requests written as JSONL, uploaded (purpose ``batch``), a batch
created over the file; results come back as an output file and an error file. Requests
are identified by ``custom_id``, the request's cache key, so results land straight in
the response cache."""

from __future__ import annotations

import json
import tempfile
from typing import Any, AsyncIterator

from featurelens.core.protocols import LLMProvider, LLMRequest, LLMResponse
from featurelens.llm.batch_clients import BatchState, Limits
from featurelens.llm.batch_intent import METADATA_KEY, not_created
from featurelens.llm.batch_results import read_jsonl


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

    async def submit(self, lines: list[dict[str, Any]], label: str | None = None) -> str:
        """Upload ``lines`` and create a batch over them; ``label`` (the store's placeholder
        for this submission) names the file and rides in the batch's metadata."""
        endpoint = lines[0]["url"]
        with tempfile.TemporaryFile("w+b") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
            handle.seek(0)
            try:
                uploaded = await self.client.files.create(
                    file=(f"{label or 'featurelens-batch'}.jsonl", handle), purpose="batch")
            except Exception as error:
                raise not_created(error)  # no batch can exist without its input file
        extra = {"metadata": {METADATA_KEY: label}} if label else {}
        batch = await self.client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,
                                                 completion_window="24h", **extra)
        return batch.id

    async def find(self, label: str, since: float, request_count: int) -> list[str]:
        """Batches whose metadata carries ``label``, paging newest first until batches
        created before ``since`` (epoch seconds)."""
        found = []
        async for batch in self.client.batches.list(limit=100):
            if batch.created_at < since:
                break
            if (batch.metadata or {}).get(METADATA_KEY) == label:
                found.append(batch.id)
        return found

    async def state(self, batch_id: str) -> BatchState:
        batch = await self.client.batches.retrieve(batch_id)
        counts = batch.request_counts
        text = f"{counts.completed}/{counts.total} done, {counts.failed} failed" if counts else ""
        errors = getattr(getattr(batch, "errors", None), "data", None) or []
        reason = "; ".join(str(getattr(e, "message", None) or getattr(e, "code", "")) for e in errors[:3])
        return BatchState(batch.status, batch.status in self._FINISHED, text, reason)

    async def results(self, batch_id: str) -> AsyncIterator[tuple[str, LLMResponse | None, str | None]]:
        batch = await self.client.batches.retrieve(batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for result in read_jsonl(content.text, _answer):
                yield result


def _answer(item: dict[str, Any]) -> tuple[LLMResponse | None, str | None]:
    """One result line's answer, or the error the batch gave for it."""
    from featurelens.llm.providers.openai_provider import response_from_chat, response_from_completion

    response = item.get("response") or {}
    body = response.get("body") or {}
    if item.get("error") or response.get("status_code") != 200:
        error = item.get("error") or body.get("error") or {}
        message = error.get("message", error) if isinstance(error, dict) else error
        return None, f"HTTP {response.get('status_code')}: {message}"
    if body.get("object") == "text_completion":
        return response_from_completion(body), None
    return response_from_chat(body), None
