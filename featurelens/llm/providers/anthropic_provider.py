"""The ``anthropic`` provider: Claude through the official async SDK.

The shared prefix of a request (its first ``shared_prefix`` messages: instructions and
few-shot turns, identical for every feature) is marked with ``cache_control`` so that
Anthropic serves it from its prompt cache at a tenth of the price. Claude gives no
log-probabilities, so this provider does not claim those capabilities.
"""

from __future__ import annotations

import os

from typing import Any, AsyncIterator, Sequence

import anthropic

from featurelens.core.host.protocols import BatchLimits, BatchState, LLMRequest, LLMResponse
from featurelens.llm.batch.results import UNREADABLE
from featurelens.llm.providers import api_key
from featurelens.llm.providers.deadline import within
from featurelens.llm.providers.declarations import ANTHROPIC
from featurelens.llm.providers.loop_client import LoopClient
from featurelens.llm.providers.provider_options import base_url_option, seconds_option, whole_option

KEY_ENV = "ANTHROPIC_API_KEY"
_EPHEMERAL = {"type": "ephemeral"}


def message_params(model: str, request: LLMRequest) -> dict[str, Any]:
    """Messages API parameters (live calls and Message Batches share them)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    marked = False
    messages = request.messages or [{"role": "user", "content": request.prompt or ""}]
    for index, message in enumerate(messages):
        block: dict[str, Any] = {"type": "text", "text": message.get("content", "")}
        if index == request.shared_prefix - 1:
            block["cache_control"] = _EPHEMERAL
            marked = True
        if message.get("role") == "system":
            system.append(block)
        else:
            turns.append({"role": message.get("role", "user"), "content": [block]})
    # No temperature: this SDK's Messages API no longer takes one (answers are near-greedy).
    params: dict[str, Any] = {"model": model, "max_tokens": max(1, request.max_tokens),
                              "messages": turns}
    if system:
        params["system"] = system
    if request.shared_prefix and not marked:  # prefix longer than the messages: cache them all
        (system or turns[-1]["content"])[-1]["cache_control"] = _EPHEMERAL
    return params


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def response_from_message(message: Any) -> LLMResponse:
    """An :class:`LLMResponse` from a Message (SDK object or a batch result's dict)."""
    text = "".join(_get(b, "text") or "" for b in (_get(message, "content") or [])
                   if _get(b, "type") == "text")
    usage = _get(message, "usage") or {}
    fresh = int(_get(usage, "input_tokens") or 0)
    read = int(_get(usage, "cache_read_input_tokens") or 0)
    written = int(_get(usage, "cache_creation_input_tokens") or 0)
    return LLMResponse(text=text, input_tokens=fresh + read + written,
                       output_tokens=int(_get(usage, "output_tokens") or 0),
                       cached_input_tokens=read)


class AnthropicProvider:
    """``anthropic:<model>``; options: ``base_url``, ``timeout``, ``http_client``,
    ``batch_requests`` (most requests a Message Batch holds, under Anthropic's 100,000)."""

    name = "anthropic"
    key_env = KEY_ENV
    capabilities = ANTHROPIC.capabilities  #: as declared (providers.declarations)

    def __init__(self, model: str, *, base_url: str | None = None, timeout: float = 120.0,
                 http_client: Any = None, batch_requests: int | str | None = None):
        self.model = model
        self.batch_requests = (None if batch_requests is None
                               else whole_option("anthropic", "batch_requests", batch_requests, example=10000))
        self.timeout = timeout = seconds_option("anthropic", "timeout", timeout)
        base_url = base_url_option("anthropic", base_url if base_url is not None else
                                   os.environ.get("ANTHROPIC_BASE_URL") or None,
                                   "base_url" if base_url is not None else "$ANTHROPIC_BASE_URL")
        key = api_key(KEY_ENV, f"anthropic:{model}")
        self._clients = LoopClient(lambda: anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client),
            fixed=http_client is not None)

    @property
    def client(self) -> Any:
        """The SDK client for the running event loop (see :mod:`.loop_client`)."""
        return self._clients.get()

    def batch_client(self) -> "AnthropicBatches":
        """This provider's batch API client (its declaration's ``batch_client``)."""
        return AnthropicBatches(self)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if request.prompt_logprobs or request.top_logprobs:
            raise ValueError("Anthropic models return no log-probabilities; use a scorer "
                             "variant that asks for numbers as text")
        message = await within(self.timeout, self.client.messages.create(**message_params(self.model, request)))
        if not isinstance(_get(message, "content"), list):  # an HTML page or an event stream
            raise ValueError(f"the server answered without a message: {str(message)[:200]!r}")
        return response_from_message(message)

    async def aclose(self) -> None:
        await self.client.close()

    async def loop_done(self) -> None:
        """Close the SDK client of the running loop before it ends (see :mod:`.loop_client`)."""
        await self._clients.loop_done()


# Anthropic Message Batches: the requests go in the create call and results stream
# back as JSONL, identified by ``custom_id`` (the request's cache key).

class AnthropicBatches:
    """Anthropic Message Batches."""

    limits = BatchLimits(100_000, 240 * 2**20)

    def __init__(self, provider: AnthropicProvider):
        self.provider = provider
        self.client = provider.client
        if provider.batch_requests:
            self.limits = BatchLimits(min(provider.batch_requests, self.limits.requests), self.limits.bytes)

    def line(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        if request.prompt_logprobs or request.top_logprobs:
            raise ValueError("Anthropic models return no log-probabilities")
        return {"custom_id": custom_id, "params": message_params(self.provider.model, request)}

    async def submit(self, lines: Sequence[dict[str, Any]], label: str | None = None) -> str:
        """Create a batch of ``lines``; Message Batches keep no metadata, so ``label`` (the
        store's placeholder) cannot travel and :meth:`find` matches by time and size.
        The requests travel in the create call's body, so they are decoded here, one batch
        (at most 256 MB of JSON) at a time."""
        batch = await self.client.messages.batches.create(requests=list(lines))
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
