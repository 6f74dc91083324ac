"""Anthropic Message Batches: the requests go in the create call and results stream
back as JSONL, identified by ``custom_id`` (the request's cache key)."""

from __future__ import annotations

from typing import Any, AsyncIterator

from featurelens.core.protocols import LLMProvider, LLMRequest, LLMResponse
from featurelens.llm.batch_results import UNREADABLE
from featurelens.llm.batch_clients import BatchState, Limits


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

    async def submit(self, lines: list[dict[str, Any]], label: str | None = None) -> str:
        """Create a batch of ``lines``; Message Batches keep no metadata, so ``label`` (the
        store's placeholder) cannot travel and :meth:`find` matches by time and size."""
        batch = await self.client.messages.batches.create(requests=lines)
        return batch.id

    async def find(self, label: str, since: float, request_count: int) -> list[str]:
        """Batches created at or after ``since`` (epoch seconds) holding ``request_count``
        requests, paging newest first."""
        found = []
        async for batch in self.client.messages.batches.list(limit=100):
            if batch.created_at.timestamp() < since:
                break
            c = batch.request_counts
            if c.processing + c.succeeded + c.errored + c.canceled + c.expired == request_count:
                found.append(batch.id)
        return found

    async def state(self, batch_id: str) -> BatchState:
        batch = await self.client.messages.batches.retrieve(batch_id)
        c = batch.request_counts
        text = (f"{c.succeeded} succeeded, {c.errored} errored, {c.processing} processing, "
                f"{c.expired} expired, {c.canceled} canceled")
        return BatchState(batch.processing_status, batch.processing_status == "ended", text)

    async def results(self, batch_id: str) -> AsyncIterator[tuple[str, LLMResponse | None, str | None]]:
        from featurelens.llm.providers.anthropic_provider import response_from_message

        entries = (await self.client.messages.batches.results(batch_id)).__aiter__()
        while True:
            try:
                entry = await entries.__anext__()
            except StopAsyncIteration:
                return
            except ValueError as error:  # a line that is not JSON ends the SDK's decoding
                yield UNREADABLE, None, f"the result file could not be read past a line ({type(error).__name__})"
                return
            custom_id = getattr(entry, "custom_id", None)
            if not isinstance(custom_id, str) or not custom_id:
                yield UNREADABLE, None, "a result line names no custom_id"
                continue
            try:
                result = entry.result
                if result.type == "succeeded":
                    yield custom_id, response_from_message(result.message), None
                    continue
                error = getattr(result, "error", None)
                detail = getattr(getattr(error, "error", None), "message", None) or result.type
                answer: tuple[LLMResponse | None, str | None] = (None, f"batch request {result.type}: {detail}")
            except Exception as problem:  # noqa: BLE001 - a malformed answer fails only its request
                answer = (None, f"its answer could not be read ({type(problem).__name__})")
            yield custom_id, *answer
