"""What each kind of component must provide, and every optional member the host reads.

These are the contracts between the stages: a model backend feeds activations to a
dictionary, the extraction stage writes :class:`FeatureRecord` rows to the store,
explainers and scorers turn records into :class:`LLMRequest` objects that an
:class:`LLMProvider` answers. Plugins implement them structurally (no subclassing
needed); :class:`featurelens.core.dictionaries.base.Dictionary` is a convenient base for
dictionaries.

Explainers, scorers and providers may also carry optional members (``needs_llm``,
``example_kinds``, ``more_requests``, ``aclose``...). Each is declared, with its default,
on :class:`ExplainerBase`, :class:`ScorerBase` and :class:`LLMProviderBase`: subclass
them, or set the members on any class. The host reads them only through
:func:`declared` and the readers below it, which take the default from the base class, so
a member the host reads and the contract leaves out cannot exist (``declared`` raises).

An LLM provider describes itself once, at registration, with a :class:`ProviderInfo`:
capabilities, token counter, prompt-cache rule, batch client, grouped-request default,
output floor and prices. Cost estimates, dry runs, the batch-API default and grouped
explanations read that declaration (without building a client or needing a key), so a
third-party provider is planned and priced exactly as a built-in with the same
declaration.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    ClassVar,
    Iterable,
    Iterator,
    Mapping,
    Protocol,
    Sequence,
    runtime_checkable,
)

if TYPE_CHECKING:
    import torch

    from featurelens.core.dictionaries.base import Dictionary


# -- model backends -------------------------------------------------------------------
@runtime_checkable
class ModelBackend(Protocol):
    """A loaded language model that can be read at hookpoints."""

    model_id: str  #: stable id stored in the ``models`` table
    tokenizer: Any  #: a transformers tokenizer
    device: "torch.device"
    d_model: int
    n_layers: int

    def hookpoints(self) -> list[str]:
        """Every hookpoint name this model accepts, in TransformerLens naming."""

    def hookpoint_width(self, hookpoint: str) -> int:
        """Width of the activation at ``hookpoint``."""

    def run(self, input_ids: "torch.Tensor", hookpoints: Sequence[str]) -> dict[str, "torch.Tensor"]:
        """Activations ``[batch, seq, width]`` at ``hookpoints``; stops after the deepest."""

    def logits_with_patch(
        self, input_ids: "torch.Tensor", hookpoint: str | None, patch: Any = None
    ) -> "torch.Tensor":
        """Full-model logits, with the output at ``hookpoint`` replaced by ``patch(act)``."""

    def unembedding(self, fold_final_norm: bool = False) -> "torch.Tensor":
        """``[d_model, vocab]`` matrix mapping a residual direction to output logits."""


class ModelBackendBase:
    """A base for model backends: the required members, and every optional one the host
    reads, with its default (read through :func:`declared`, never ``getattr``).

    The optional members fall in two groups. Recorded in the store's ``models`` row and
    checked before a long run: ``backend_name``, ``source``, ``vocab_size``, ``dtype``,
    ``family``, ``provenance``, ``check_context``, ``max_context``. Needed to edit
    activations (``steer``, ``effects``, the ``intervention`` scorer): ``model`` (the torch
    module whose submodules are hooked; ``model.generate`` continues text), ``site(name)``
    (hookpoint name -> the :class:`featurelens.core.model.hookpoints.HookSite` in ``model``)
    and ``run_full(input_ids)`` (full-vocabulary logits ``[batch, seq, vocab]``); a backend
    without them is refused there in one sentence. :class:`featurelens.api.CausalLM` gives
    a backend built on a transformers model all of them. Each may be a class or an
    instance attribute (or a method, for the callables).
    """

    model_id: str
    tokenizer: Any
    device: "torch.device"
    d_model: int
    n_layers: int

    #: ``models.backend``: the name it was registered under (the default is the built-in's).
    backend_name: str = "hf"
    #: ``models.source``: where the weights came from (``None``: ``model_id``).
    source: str | None = None
    #: ``models.vocab_size`` (``None``: unknown).
    vocab_size: int | None = None
    #: the weights' dtype, recorded in the ``models`` row's config.
    dtype: Any = None
    #: the module tree's family (an object with a ``name``), recorded in the config.
    family: Any = None
    #: anything else worth recording in the ``models`` row's config (library versions...).
    provenance: dict[str, Any] = {}
    #: ``check_context(context)``: refuse windows longer than the model takes, in one sentence.
    check_context: Callable[[int], None] | None = None
    #: the longest sequence the model takes (steered generation stops short of it).
    max_context: int | None = None
    #: the torch module interventions hook (``None``: the backend cannot be steered).
    model: Any = None
    #: ``site(hookpoint) -> HookSite`` in ``model`` (``None``: cannot be steered).
    site: Callable[[str], Any] | None = None
    #: ``run_full(input_ids) -> logits [batch, seq, vocab]`` (``None``: cannot be steered).
    run_full: Callable[[Any], Any] | None = None

    def hookpoints(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must implement hookpoints()")

    def hookpoint_width(self, hookpoint: str) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement hookpoint_width()")

    def run(self, input_ids: "torch.Tensor", hookpoints: Sequence[str]) -> dict[str, "torch.Tensor"]:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def logits_with_patch(self, input_ids: "torch.Tensor", hookpoint: str | None,
                          patch: Any = None) -> "torch.Tensor":
        raise NotImplementedError(f"{type(self).__name__} must implement logits_with_patch()")

    def unembedding(self, fold_final_norm: bool = False) -> "torch.Tensor":
        raise NotImplementedError(f"{type(self).__name__} must implement unembedding()")


#: What a backend must offer to have its activations edited (steer, effects, the
#: intervention scorer); each is declared on :class:`ModelBackendBase` with ``None``.
STEERING_MEMBERS = ("model", "site", "run_full")


def steering_missing(backend: Any) -> list[str]:
    """The :data:`STEERING_MEMBERS` ``backend`` lacks (empty: it can be steered)."""
    return [name for name in STEERING_MEMBERS if declared(backend, name, ModelBackendBase) is None]


# -- corpora ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Document:
    """One document of a corpus, with where it came from."""

    text: str
    ref: str  #: file path, ``path#row`` or dataset row id


@runtime_checkable
class CorpusSource(Protocol):
    """Documents, read lazily so corpora larger than memory stream."""

    def fingerprint(self) -> str:
        """A stable string identifying the corpus contents (used in corpus ids)."""

    def __iter__(self) -> Iterator[Document]: ...


# -- dictionary formats ----------------------------------------------------------------
@runtime_checkable
class DictionaryFormat(Protocol):
    """An on-disk dictionary format."""

    name: str

    def detect(self, path: str) -> bool:
        """True if ``path`` looks like this format (cheap: file names, config keys)."""

    def load(self, path: str, **options: Any) -> "Dictionary":
        """Read the dictionary at ``path``; it must encode exactly as the writer does.

        Optional: ``decoder_rows(path, features) -> Tensor | None``, rows ``features``
        (ascending ids) of the loaded dictionary's ``decoder_directions()`` read without
        loading the rest; lazy logit effects use it (None, or no such member: the
        dictionary is loaded whole)."""

    def save(self, dictionary: "Dictionary", path: str) -> None:
        """Write ``dictionary`` (raise FeaturelensError if the format is read-only)."""


# -- records handed to explainers and scorers ----------------------------------------
@dataclass
class Example:
    """A context window with the feature's activation at every token."""

    tokens: list[str]
    activations: list[float]
    kind: str  #: top, quantile or random
    quantile: int | None = None

    @property
    def max_activation(self) -> float:
        return max(self.activations, default=0.0)


@dataclass
class FeatureRecord:
    """Everything stored about one feature that an explainer or scorer may use."""

    dictionary_id: str
    feature: int
    max_activation: float
    density: float
    examples: list[Example]
    top_logits: list[str] = field(default_factory=list)
    bottom_logits: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Example]:
        return [e for e in self.examples if e.kind == kind]


# -- LLM providers ---------------------------------------------------------------------
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


# -- explainers and scorers -------------------------------------------------------------
class ParseError(ValueError):
    """An LLM answer that cannot be read; counted as a failure, never stored as a value."""


@runtime_checkable
class Explainer(Protocol):
    """Builds the request(s) that explain one feature and reads the answer.

    Optional members, with their defaults, are those of :class:`ExplainerBase`.
    """

    name: str

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        """The request(s) that explain one feature (usually one)."""

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        """The explanation text; raise :class:`ParseError` if the answer is unusable.

        A ``str`` subclass with an ``evidence`` dict (token-lookup's coverage and
        precision) has that dict stored beside the explanation's options."""


#: ``example_kinds``: which stored windows a component reads, ``{kind: most or None}``
#: (``{"top": 10}``); the engine then loads only those. ``None``: every kind.
ExampleKinds = Callable[[], "dict[str, int | None] | None"]
#: ``example_fallbacks``: windows loaded only for a feature that has none of a kind,
#: ``{kind: {fallback kind: most or None}}`` (``{"quantile": {"top": 60}}``: the first 60
#: top windows of a feature without quantile windows). ``None``: no fallback.
ExampleFallbacks = Callable[[], "dict[str, dict[str, int | None]] | None"]


class ExplainerBase:
    """A base for explainers: the required members, and the optional ones with their defaults."""

    name: str
    #: False for explainers that send no LLM request (their rows record ``offline:none``).
    needs_llm: ClassVar[bool] = True
    #: True when it sends one chat request per feature that several features can share
    #: (grouped explanation requests); only then does a provider's grouped default apply.
    groups_features: ClassVar[bool] = False
    #: True when its answer spans several lines (no grouping then).
    reasoning: ClassVar[bool] = False
    #: The output tokens one answer may use (caps how many features a request groups).
    max_tokens: ClassVar[int | None] = None
    #: Top windows a request shows, when that is an option of the explainer (``n_examples``):
    #: grouped default requests show fewer. ``None``: no such option.
    n_examples: ClassVar[int | None] = None
    #: ``example_kinds() -> {kind: most or None}`` (see :data:`ExampleKinds`).
    example_kinds: ClassVar[ExampleKinds | None] = None
    #: ``example_fallbacks() -> {kind: {fallback kind: most or None}}`` (see
    #: :data:`ExampleFallbacks`): windows read only by features lacking a kind.
    example_fallbacks: ClassVar[ExampleFallbacks | None] = None
    #: Whether it reads ``record.top_logits``/``bottom_logits``: the explain job then first
    #: computes the effects a lazy extraction left pending. True unless declared otherwise, so
    #: an explainer that reads them never gets empty lists silently.
    reads_logit_effects: ClassVar[bool] = True

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        raise NotImplementedError(f"{type(self).__name__} must implement requests()")

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        raise NotImplementedError(f"{type(self).__name__} must implement parse()")


@dataclass
class ScoreResult:
    score: float | None
    status: str  #: ok, undefined or failed
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    n_parse_failures: int = 0


@runtime_checkable
class Scorer(Protocol):
    """Builds the requests that score one explanation and turns the answers into a score.

    Optional members, with their defaults, are those of :class:`ScorerBase`; ``score``
    may also take a keyword ``capabilities`` (the provider's, as given to ``requests``)
    so that reading agrees with the mode the requests were built for.
    """

    name: str

    def requests(
        self, record: FeatureRecord, explanation: str, capabilities: frozenset[str]
    ) -> list[LLMRequest]:
        """The requests that score ``explanation`` against ``record``."""

    def score(
        self, record: FeatureRecord, explanation: str, responses: list[LLMResponse | None]
    ) -> ScoreResult:
        """Turn answers into a score (``None`` in ``responses``: that request failed)."""


class ScorerBase:
    """A base for scorers: the required members, and the optional ones with their defaults."""

    name: str
    #: False for scorers that send no LLM request (their rows record ``offline:none``).
    needs_llm: ClassVar[bool] = True
    #: ``example_kinds() -> {kind: most or None}`` (see :data:`ExampleKinds`).
    example_kinds: ClassVar[ExampleKinds | None] = None
    #: ``example_fallbacks() -> {kind: {fallback kind: most or None}}`` (see
    #: :data:`ExampleFallbacks`): windows read only by features lacking a kind.
    example_fallbacks: ClassVar[ExampleFallbacks | None] = None
    #: ``choose_mode(capabilities) -> str``: the mode it scores in on a provider with
    #: these capabilities (shown by ``estimate``); ``None``: one mode only.
    choose_mode: ClassVar[Callable[[frozenset[str]], str] | None] = None
    #: ``more_requests(record, explanation, responses, capabilities) -> list[LLMRequest]``:
    #: the next round's requests after ``responses`` (empty: done); ``None``: one round.
    more_requests: ClassVar[Callable[..., list[LLMRequest]] | None] = None
    #: ``all_requests(record, explanation, capabilities) -> list[LLMRequest]``: every
    #: round at once (the upper bound dry runs and estimates count); ``None``: ``requests``.
    all_requests: ClassVar[Callable[..., list[LLMRequest]] | None] = None
    #: ``use_store(store)``: called with the open store before the first request, for a
    #: scorer that reads more of it (the intervention scorer: each dictionary's model and
    #: hookpoint); ``None``: it reads only the records it is given.
    use_store: ClassVar[Callable[[Any], None] | None] = None
    #: ``prepare_chunk(pairs)``: called once per chunk with the ``(record, explanation)``
    #: pairs about to be scored, before their requests are built, for a scorer whose work is
    #: cheaper in bulk (the embedding scorer embeds the chunk's texts in large batches);
    #: ``None``: each pair is scored on its own.
    prepare_chunk: ClassVar[Callable[[list[tuple[FeatureRecord, str]]], None] | None] = None

    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str]) -> list[LLMRequest]:
        raise NotImplementedError(f"{type(self).__name__} must implement requests()")

    def score(self, record: FeatureRecord, explanation: str, responses: list[LLMResponse | None],
              *, capabilities: frozenset[str] = frozenset()) -> ScoreResult:
        raise NotImplementedError(f"{type(self).__name__} must implement score()")


# -- reading optional members -----------------------------------------------------------
def declared(component: Any, name: str, base: type) -> Any:
    """``component.name``, or the default ``base`` declares for it.

    The host reads optional members only through here: asking for a member ``base``
    does not declare is a bug in the host (AttributeError), never a silent default.
    """
    default = base.__dict__[name] if name in base.__dict__ else getattr(base, name)
    return getattr(component, name, default)


def example_kinds(component: Any) -> dict[str, int | None] | None:
    """The stored windows an explainer or scorer reads (``None``: every kind)."""
    wanted = declared(component, "example_kinds", ExplainerBase)
    return wanted() if callable(wanted) else wanted


def example_fallbacks(component: Any) -> dict[str, dict[str, int | None]] | None:
    """The windows an explainer or scorer reads only for a feature lacking a kind
    (``None``: none)."""
    wanted = declared(component, "example_fallbacks", ExplainerBase)
    return wanted() if callable(wanted) else wanted


def needs_llm(component: Any) -> bool:
    """Whether an explainer or scorer sends requests to an LLM (the default: yes)."""
    return bool(declared(component, "needs_llm", ExplainerBase))


def score_takes_capabilities(scorer: Any) -> bool:
    """Whether ``scorer.score`` takes the keyword ``capabilities``."""
    try:
        return "capabilities" in inspect.signature(scorer.score).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
