"""What an explainer and a scorer provide, with every optional member and its default
(:class:`ExplainerBase`, :class:`ScorerBase`)."""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

from featurelens.core.errors import PluginError
from featurelens.core.host.protocols.members import declared
from featurelens.core.host.protocols.providers import LLMRequest, LLMResponse
from featurelens.core.host.protocols.records import FeatureRecord


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
#: ``example_width``: the most tokens of a window a component looks at; longer windows are
#: cut to that many around their first peak as they are read, the way
#: ``featurelens.llm.window_text.crop`` cuts them, so the values it would drop are never
#: converted. ``None``: whole windows.
ExampleWidth = Callable[[], "int | None"]


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
    #: ``example_width() -> int | None`` (see :data:`ExampleWidth`): windows read cut to it.
    example_width: ClassVar[ExampleWidth | None] = None
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
    #: ``example_width() -> int | None`` (see :data:`ExampleWidth`): windows read cut to it.
    example_width: ClassVar[ExampleWidth | None] = None
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


# -- reading their optional members ---------------------------------------------------
def example_kinds(component: Any) -> dict[str, int | None] | None:
    """The stored windows an explainer or scorer reads (``None``: every kind)."""
    wanted = declared(component, "example_kinds", ExplainerBase)
    return wanted() if callable(wanted) else wanted


def example_fallbacks(component: Any) -> dict[str, dict[str, int | None]] | None:
    """The windows an explainer or scorer reads only for a feature lacking a kind
    (``None``: none)."""
    wanted = declared(component, "example_fallbacks", ExplainerBase)
    return wanted() if callable(wanted) else wanted


def example_width(component: Any) -> int | None:
    """The most tokens of a window an explainer or scorer looks at (``None``: whole windows);
    anything but a positive whole number or ``None`` is the plugin's error, named."""
    wanted = declared(component, "example_width", ExplainerBase)
    width = wanted() if callable(wanted) else wanted
    if width is None:
        return None
    try:
        tokens = operator.index(width) if not isinstance(width, bool) else 0
    except TypeError:
        tokens = 0
    if tokens < 1:
        raise PluginError(f"{type(component).__name__}.example_width() gave {width!r}; it must give a "
                          "positive number of tokens, or None to read whole windows: fix the plugin.")
    return tokens


def needs_llm(component: Any) -> bool:
    """Whether an explainer or scorer sends requests to an LLM (the default: yes)."""
    return bool(declared(component, "needs_llm", ExplainerBase))


def score_takes_capabilities(scorer: Any) -> bool:
    """Whether ``scorer.score`` takes the keyword ``capabilities``."""
    try:
        return "capabilities" in inspect.signature(scorer.score).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False
