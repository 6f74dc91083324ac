"""The ``openai`` provider: OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama).

Chat requests go to ``/chat/completions`` (with ``top_logprobs`` when asked). Requests
that want prompt log-probabilities go to the completions endpoint with ``echo=True,
logprobs=k``, which vLLM-style servers answer with the log-probabilities of every
prompt token; OpenAI's own API does not, so that capability is claimed only for a
custom base URL (or ``prompt_logprobs=True``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any, AsyncIterator, Sequence

import openai

from featurelens.core.host.protocols import (
    BatchLimits,
    BatchState,
    LLMRequest,
    LLMResponse,
    TokenLogprobs,
)
from featurelens.llm.batch.intent import METADATA_KEY, not_created
from featurelens.llm.batch.results import read_jsonl
from featurelens.llm.providers import api_key
from featurelens.llm.providers.deadline import within
from featurelens.llm.providers.declarations import OPENAI_BASE_ENV, openai_capabilities
from featurelens.llm.providers.loop_client import LoopClient
from featurelens.llm.providers.provider_options import base_url_option, seconds_option, whole_option

KEY_ENV = "OPENAI_API_KEY"
BASE_ENV = OPENAI_BASE_ENV


def chat_body(model: str, request: LLMRequest, prefix_cache_key: bool = False) -> dict[str, Any]:
    """The JSON body of a chat completion (live calls and Batch API lines share it).

    ``prefix_cache_key`` adds OpenAI's ``prompt_cache_key`` (a hash of the shared prefix),
    which routes requests with the same instructions to the same prompt cache; only for
    api.openai.com, since other servers may refuse fields they do not know.
    """
    body: dict[str, Any] = {"model": model, "messages": request.messages,
                            "max_tokens": request.max_tokens, "temperature": request.temperature}
    if prefix_cache_key and request.shared_prefix:
        shared = json.dumps(request.messages[:request.shared_prefix], sort_keys=True)
        body["prompt_cache_key"] = "featurelens-" + hashlib.sha256(shared.encode()).hexdigest()[:32]
    if request.top_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = min(20, request.top_logprobs)
    if request.json_output:
        body["response_format"] = {"type": "json_object"}
    if request.stop_at_newline:
        body["stop"] = ["\n"]
    return body


def completion_body(model: str, request: LLMRequest) -> dict[str, Any]:
    """Body of a raw completion that echoes the prompt with its log-probabilities."""
    prompt = request.prompt
    if prompt is None:
        prompt = "\n\n".join(m.get("content", "") for m in request.messages)
    return {"model": model, "prompt": prompt, "echo": True, "max_tokens": max(1, request.max_tokens),
            "logprobs": min(20, max(1, request.prompt_logprobs)), "temperature": request.temperature}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def response_from_chat(data: Any) -> LLMResponse:
    """An :class:`LLMResponse` from a chat completion (SDK object or the Batch API's dict)."""
    choice = _get(data, "choices")[0]
    message = _get(choice, "message")
    usage = _get(data, "usage") or {}
    details = _get(usage, "prompt_tokens_details") or {}
    logprobs = []
    for item in (_get(_get(choice, "logprobs") or {}, "content") or []):
        top = {_get(t, "token"): float(_get(t, "logprob")) for t in (_get(item, "top_logprobs") or [])}
        logprobs.append(TokenLogprobs(_get(item, "token"), float(_get(item, "logprob")), top))
    return LLMResponse(
        text=_get(message, "content") or "",
        input_tokens=int(_get(usage, "prompt_tokens") or 0),
        output_tokens=int(_get(usage, "completion_tokens") or 0),
        cached_input_tokens=int(_get(details, "cached_tokens") or 0),
        output_logprobs=logprobs)


def response_from_completion(data: Any) -> LLMResponse:
    """Split an echoed completion into prompt and output log-probabilities."""
    choice = _get(data, "choices")[0]
    usage = _get(data, "usage") or {}
    lp = _get(choice, "logprobs") or {}
    tokens = list(_get(lp, "tokens") or [])
    values = list(_get(lp, "token_logprobs") or [])
    tops = list(_get(lp, "top_logprobs") or [])
    items = [TokenLogprobs(t, None if v is None else float(v),
                           {k: float(x) for k, x in (tops[i] or {}).items()} if i < len(tops) else {})
             for i, (t, v) in enumerate(zip(tokens, values))]
    n_prompt = int(_get(usage, "prompt_tokens") or 0) or len(items)
    text = _get(choice, "text") or ""
    prompt_text = "".join(tokens[:n_prompt])
    return LLMResponse(
        text=text[len(prompt_text):] if text.startswith(prompt_text) else text,
        input_tokens=n_prompt, output_tokens=int(_get(usage, "completion_tokens") or 0),
        prompt_logprobs=items[:n_prompt], output_logprobs=items[n_prompt:])


def _json(result: Any) -> dict[str, Any]:
    """The decoded body; a server that answered 200 with something else is an error."""
    if not isinstance(result, dict) or not result.get("choices"):
        raise ValueError(f"the server answered without choices: {str(result)[:200]!r}")
    return result


class OpenAIProvider:
    """``openai:<model>``; options: ``base_url``, ``timeout``, ``prompt_logprobs``, ``http_client``,
    ``batch_requests`` (most requests a Batch API file holds, under OpenAI's 50,000: an
    organisation's enqueued-token limit can refuse a full file)."""

    name = "openai"
    key_env = KEY_ENV

    def __init__(self, model: str, *, base_url: str | None = None, timeout: float = 120.0,
                 prompt_logprobs: bool | None = None, http_client: Any = None,
                 max_connections: int | None = None, batch_requests: int | str | None = None):
        self.model = model
        self.batch_requests = (None if batch_requests is None
                               else whole_option("openai", "batch_requests", batch_requests, example=10000))
        self.timeout = timeout = seconds_option("openai", "timeout", timeout)
        base_url = base_url_option("openai", base_url or os.environ.get(BASE_ENV) or None,
                                   "base_url" if base_url else f"${BASE_ENV}")
        custom = base_url is not None and "api.openai.com" not in base_url
        # Local OpenAI-compatible servers usually need no key; the SDK still wants a string.
        key = api_key(KEY_ENV, f"openai:{model}", required=not custom) or "not-needed"
        self.base_url = base_url
        self.prefix_cache_key = not custom
        self._clients = LoopClient(lambda: openai.AsyncOpenAI(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client),
            fixed=http_client is not None)
        self.capabilities = openai_capabilities({"base_url": base_url, "prompt_logprobs": prompt_logprobs})

    @property
    def client(self) -> Any:
        """The SDK client for the running event loop (see :mod:`.loop_client`)."""
        return self._clients.get()

    def batch_client(self) -> "OpenAIBatches":
        """This provider's batch API client (its declaration's ``batch_client``)."""
        return OpenAIBatches(self)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        # ``client.post`` is the SDK's own request path (same connection pool, auth, timeouts
        # and typed errors) without the per-call TypedDict transform and pydantic model
        # build of ``create()``, which change nothing for plain-text messages yet cost more
        # CPU than the rest of the call: at hundreds of requests a second on a laptop the
        # client, not the network, is the bottleneck (benchmarks/labeling.py measures it).
        if request.prompt_logprobs:
            result = await within(self.timeout, self.client.post(
                "/completions", cast_to=object, body=completion_body(self.model, request)))
            return response_from_completion(_json(result))
        if request.prompt is not None and not request.messages:
            request_messages = [{"role": "user", "content": request.prompt}]
            body = chat_body(self.model, LLMRequest(messages=request_messages,
                                                    max_tokens=request.max_tokens,
                                                    temperature=request.temperature,
                                                    top_logprobs=request.top_logprobs,
                                                    json_output=request.json_output))
        else:
            body = chat_body(self.model, request, self.prefix_cache_key)
        result = await within(self.timeout, self.client.post("/chat/completions", cast_to=object, body=body))
        return response_from_chat(_json(result))

    async def aclose(self) -> None:
        await self.client.close()

    async def loop_done(self) -> None:
        """Close the SDK client of the running loop before it ends (see :mod:`.loop_client`)."""
        await self._clients.loop_done()


# OpenAI's Batch API: requests written as JSONL, uploaded (purpose ``batch``), a batch
# created over the file; results come back as an output file and an error file. Requests
# are identified by ``custom_id``, the request's cache key, so results land straight in
# the response cache.

class OpenAIBatches:
    """OpenAI Batch API over ``/v1/chat/completions`` (or ``/v1/completions``)."""

    limits = BatchLimits(50_000, 190 * 2**20)
    _FINISHED = {"completed", "expired", "cancelled", "failed"}

    def __init__(self, provider: OpenAIProvider):
        self.provider = provider
        self.client = provider.client
        if provider.batch_requests:
            self.limits = BatchLimits(min(provider.batch_requests, self.limits.requests), self.limits.bytes)

    def line(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        if request.prompt_logprobs:
            return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions",
                    "body": completion_body(self.provider.model, request)}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                "body": chat_body(self.provider.model, request, self.provider.prefix_cache_key)}

    async def submit(self, lines: Sequence[dict[str, Any]], label: str | None = None) -> str:
        """Upload ``lines`` and create a batch over them; ``label`` (the store's placeholder
        for this submission) names the file and rides in the batch's metadata.

        ``lines`` written to disk already (:class:`~featurelens.llm.batch.request_file.RequestFile`)
        are uploaded from their file as they are; others are written to a temporary one."""
        endpoint = lines[0]["url"]
        name = f"{label or 'featurelens-batch'}.jsonl"
        stream = getattr(lines, "stream", None)
        with (contextlib.nullcontext(stream()) if stream is not None
              else tempfile.TemporaryFile("w+b")) as handle:
            if stream is None:
                for line in lines:
                    handle.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
                handle.seek(0)
            try:
                uploaded = await self.client.files.create(file=(name, handle), purpose="batch")
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
    response = item.get("response") or {}
    body = response.get("body") or {}
    if item.get("error") or response.get("status_code") != 200:
        error = item.get("error") or body.get("error") or {}
        message = error.get("message", error) if isinstance(error, dict) else error
        return None, f"HTTP {response.get('status_code')}: {message}"
    if body.get("object") == "text_completion":
        return response_from_completion(body), None
    return response_from_chat(body), None
