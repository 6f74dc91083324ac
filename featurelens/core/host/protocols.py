"""What each kind of component must provide.

These are the contracts between the stages: a model backend feeds activations to a
dictionary, the extraction stage writes :class:`FeatureRecord` rows to the store,
explainers and scorers turn records into :class:`LLMRequest` objects that an
:class:`LLMProvider` answers. Plugins implement them structurally (no subclassing
needed); :class:`featurelens.core.dictionaries.base.Dictionary` is a convenient base for
dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Iterable,
    Iterator,
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
        """Read the dictionary at ``path``; it must encode exactly as the writer does."""

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
    ``output_logprobs``, ``prompt_logprobs``, ``batch_api``, ``prompt_cache``."""

    name: str
    model: str
    capabilities: frozenset[str]

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Answer one request; raise on transport errors so the engine can retry."""


# -- explainers and scorers -------------------------------------------------------------
class ParseError(ValueError):
    """An LLM answer that cannot be read; counted as a failure, never stored as a value."""


@runtime_checkable
class Explainer(Protocol):
    """Builds the request(s) that explain one feature and reads the answer.

    Optional: ``example_kinds() -> {kind: most or None}`` (e.g. ``{"top": 10}``) says
    which stored windows ``requests`` reads, so the engine loads only those.
    """

    name: str

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        """The request(s) that explain one feature (usually one)."""

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        """The explanation text; raise :class:`ParseError` if the answer is unusable."""


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

    Optional, all honoured by ``featurelens score``: ``score`` may take a keyword
    ``capabilities`` (the provider's, as given to ``requests``) so that reading agrees
    with the mode the requests were built for; ``example_kinds() -> {kind: most or
    None}`` says which stored windows the scorer reads, so only those are loaded;
    ``use_store(store)`` is called with the open store before the first request, for a
    scorer that reads more of it (the intervention scorer: each dictionary's model and
    hookpoint).
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
