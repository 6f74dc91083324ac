"""What an LLM provider answers, and what it declares once at registration: requests and
responses, token counting, prompt caching, prices, batch limits and its batch client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    ClassVar,
    Mapping,
    Protocol,
    Sequence,
    runtime_checkable,
)

from featurelens.core.host.protocols.members import declared


@dataclass
class LLMRequest:
    """One request, provider-neutral.

    ``messages`` are chat turns (``{"role", "content"}``); the first ``shared_prefix``
    of them are identical across features (instructions, few-shot), so providers that
    cache prompts are told to cache them. ``prompt`` is used instead of ``messages``
    for raw completion requests that read prompt log-probabilities.
    """

    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    shared_prefix: int = 0
    top_logprobs: int = 0  #: output-token log-probabilities wanted (0: none)
    prompt_logprobs: int = 0  #: log-probabilities of every prompt position (0: none)
    json_output: bool = False
    purpose: str = "explain"  #: recorded in llm_calls (explain, score:simulation...)
    #: Stop at the first line break after some text: a one-line answer ends there, so a
    #: small model cannot ramble on (honoured by local and OpenAI-compatible providers).
    stop_at_newline: bool = False
    shared_prompt_chars: int = 0  #: leading characters of ``prompt`` identical across features
    #: Prompt log-probs are needed only at positions whose token text ends with this
    #: string (or, where the tokenizer merged it into the next token, at that token);
    #: elsewhere a provider may return empty alternatives and no log-prob. Not part of the
    #: cache key: the answer at the positions read is unchanged.
    prompt_logprobs_after: str | None = None

    def cache_material(self) -> dict[str, Any]:
        """What the response depends on; hashed, with provider and model, as the cache key."""
        return {
            "messages": self.messages, "prompt": self.prompt, "max_tokens": self.max_tokens,
            "temperature": self.temperature, "top_logprobs": self.top_logprobs,
            "prompt_logprobs": self.prompt_logprobs, "json_output": self.json_output,
        } | ({"stop_at_newline": True} if self.stop_at_newline else {})  # old keys stay valid


@dataclass
class TokenLogprobs:
    """A token and the most likely alternatives at its position (natural-log probs)."""

    token: str
    logprob: float | None
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class LLMResponse:
    """A provider's answer with its usage."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    output_logprobs: list[TokenLogprobs] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprobs] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLMProvider(Protocol):
    """An LLM client. ``capabilities`` says which request features it honours:
    ``output_logprobs``, ``prompt_logprobs``, ``batch_api``, ``prompt_cache``.

    Optional members, with their defaults, are those of :class:`LLMProviderBase`."""

    name: str
    model: str
    capabilities: frozenset[str]

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Answer one request; raise on transport errors so the engine can retry."""


class LLMProviderBase:
    """A base for providers: the required members, and the optional ones with their defaults.

    Subclassing is optional; a provider that sets none of the optional members gets the
    defaults below (read through :func:`declared`).
    """

    name: str
    model: str
    capabilities: frozenset[str] = frozenset()
    #: The environment variable holding the key; named in the message when the provider
    #: refuses the credentials (``None``: the provider needs no key).
    key_env: ClassVar[str | None] = None
    #: ``async aclose()``: release the client (connections) when a run that built this
    #: provider ends; ``None``: nothing to release.
    aclose: ClassVar[Callable[[], Awaitable[None]] | None] = None
    #: ``async loop_done()``: an event loop that used this provider (shared, not owned by the
    #: run) is ending; release what belongs to that loop only; ``None``: nothing to release.
    loop_done: ClassVar[Callable[[], Awaitable[None]] | None] = None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        raise NotImplementedError(f"{type(self).__name__} must implement complete()")


async def close_provider(provider: Any) -> None:
    """Call the provider's ``aclose`` when it has one."""
    close = declared(provider, "aclose", LLMProviderBase)
    if close is not None:
        await close()


async def loop_done(provider: Any) -> None:
    """Call the provider's ``loop_done`` when it has one."""
    done = declared(provider, "loop_done", LLMProviderBase)
    if done is not None:
        await done()


@dataclass(frozen=True)
class RequestTokens:
    """Input tokens of one request and how many of them form the shared prefix."""

    total: int
    prefix: int

    @property
    def variable(self) -> int:
        return self.total - self.prefix


@dataclass(frozen=True)
class TokenCounter:
    """How a provider counts (and bills) a request's input tokens: ``count(request) -> int``.

    ``count_text`` counts plain text; a chat request costs each message's text plus
    ``per_message``, plus ``primer`` for the reply's start, all times ``scale`` (a
    tokenizer known only as a ratio to another). ``count_request``, when given, counts
    a whole request instead (a model's own chat template). ``method`` says how, in the
    dry run's and the estimate's output; ``name`` is the tokenizer's short name
    (``o200k_base``), ``method`` when left empty.
    """

    method: str
    count_text: Callable[[str], int]
    per_message: int = 3
    primer: int = 3
    scale: float = 1.0
    count_request: Callable[[LLMRequest], int] | None = None
    name: str = ""

    def count(self, request: LLMRequest) -> int:
        if self.count_request is not None:
            return self.count_request(request)
        if request.prompt is not None and not request.messages:
            return round(self.scale * self.count_text(request.prompt))
        body = sum(self.count_text(str(m.get("content", ""))) + self.per_message for m in request.messages)
        return round(self.scale * (body + self.primer))

    def tokens(self, request: LLMRequest) -> RequestTokens:
        """Input tokens of ``request`` and of its shared prefix (what a prompt cache can serve):
        the first ``shared_prefix`` messages, or the first ``shared_prompt_chars`` of a prompt."""
        total = self.count(request)
        if request.prompt is not None and not request.messages:
            cut = max(0, min(request.shared_prompt_chars, len(request.prompt)))
            prefix = round(self.scale * self.count_text(request.prompt[:cut])) if cut else 0
        elif not request.shared_prefix:
            prefix = 0
        elif self.count_request is not None:
            prefix = self.count_request(LLMRequest(messages=request.messages[:request.shared_prefix]))
        else:
            prefix = round(self.scale * sum(self.count_text(str(m.get("content", ""))) + self.per_message
                                            for m in request.messages[:request.shared_prefix]))
        return RequestTokens(total, min(prefix, total))

    @property
    def label(self) -> str:
        return self.name or self.method


@dataclass(frozen=True)
class PromptCache:
    """Which part of a shared prefix a provider's prompt cache serves once warm.

    Prefixes shorter than ``minimum`` tokens are not cached; longer ones are served in
    steps of ``step`` tokens beyond the minimum (1: the whole prefix).
    """

    minimum: int
    step: int = 1

    def cached(self, prefix: int) -> int:
        """Input tokens of a request with a ``prefix``-token shared prefix billed at the cached rate."""
        if prefix < self.minimum:
            return 0
        return self.minimum + (prefix - self.minimum) // max(1, self.step) * max(1, self.step)


@dataclass(frozen=True)
class Price:
    """USD per million tokens; ``batch_discount`` multiplies the cost of batch-API calls."""

    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             batch: bool = False) -> float:
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        fresh = max(0, input_tokens - cached_input_tokens)
        usd = (fresh * self.input + cached_input_tokens * cached_rate
               + output_tokens * self.output) / 1e6
        return usd * (self.batch_discount if batch else 1.0)


@dataclass(frozen=True)
class BatchLimits:
    """Most requests and bytes one provider batch may hold (kept a little under the caps)."""

    requests: int
    bytes: int


@dataclass(frozen=True)
class BatchState:
    """Where a submitted provider batch stands."""

    status: str  #: the provider's own word (in_progress, completed, ended...)
    finished: bool  #: results (possibly partial) can be collected
    counts: str = ""
    reason: str = ""  #: why the provider ended the batch early (a failed batch's errors)


@runtime_checkable
class BatchClient(Protocol):
    """A provider's batch API, as ``--batch-api`` and ``batches collect`` use it.

    Requests are identified by ``custom_id`` (the request's cache key), so results land
    straight in the response cache.
    """

    limits: BatchLimits

    def line(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        """One request as a JSON-ready line of the batch."""

    async def submit(self, lines: Sequence[dict[str, Any]], label: str | None = None) -> str:
        """Create a batch of ``lines``; its id. ``label`` is the store's placeholder for it.

        ``lines`` is a sequence of the dicts :meth:`line` made, read back from a file on
        disk as it is iterated (a provider file holds up to hundreds of MB); its
        ``stream()``, when present, is that file's JSONL bytes for a client that uploads
        them as they are."""

    async def find(self, label: str, since: float, request_count: int) -> list[str]:
        """Batches created since ``since`` (epoch seconds) that may be this submission."""

    async def state(self, batch_id: str) -> BatchState: ...

    def results(self, batch_id: str) -> AsyncIterator[tuple[str, LLMResponse | None, str | None]]:
        """``(custom_id, response or None, error or None)`` for every request of the batch."""


@dataclass(frozen=True)
class ProviderInfo:
    """What an LLM provider declares about itself, given at registration
    (``register(name, factory, info=ProviderInfo(...))``) and read without a key or a client.

    - ``capabilities``: what it honours with its default options; ``capabilities_with``,
      when given, answers for the options a job passes (a custom base URL...).
    - ``token_counter(model)``: how it counts input tokens (``None``: o200k_base, labelled
      a stand-in).
    - ``prompt_cache(model)``: the cache rule for a model (``None``: nothing is discounted).
    - ``batch_client(provider)``: its batch API client (needs ``batch_api`` among the
      capabilities); ``None``: no batch API.
    - ``features_per_request``: features an explanation request carries when the user
      does not say (hosted models read several; small local ones cannot).
    - ``min_output_tokens``: output tokens a request bills at least (APIs that refuse 0).
    - ``prices``: list prices by model name; ``free``: every model costs nothing.
    """

    capabilities: frozenset[str] = frozenset()
    capabilities_with: Callable[[Mapping[str, Any]], frozenset[str]] | None = None
    token_counter: Callable[[str], TokenCounter] | None = None
    prompt_cache: Callable[[str], PromptCache | None] | None = None
    batch_client: Callable[[Any], BatchClient] | None = None
    features_per_request: int = 1
    min_output_tokens: int = 0
    prices: Mapping[str, Price] = field(default_factory=dict)
    free: bool = False

    def capabilities_for(self, options: Mapping[str, Any] | None = None) -> frozenset[str]:
        """The capabilities a provider built with ``options`` has."""
        if self.capabilities_with is not None:
            return frozenset(self.capabilities_with(dict(options or {})))
        return self.capabilities

    def cache_rule(self, model: str) -> PromptCache | None:
        return self.prompt_cache(model) if self.prompt_cache is not None else None

    def has_batch_api(self, options: Mapping[str, Any] | None = None) -> bool:
        return self.batch_client is not None and "batch_api" in self.capabilities_for(options)
