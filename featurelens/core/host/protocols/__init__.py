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

The contract is kept in one module per kind of component (extraction inputs, records,
LLM providers, explainers and scorers) plus :func:`declared`; import every name from
here (plugin authors: from :mod:`featurelens.api`).
"""

from __future__ import annotations

from featurelens.core.host.protocols.extraction import (
    STEERING_MEMBERS,
    CorpusSource,
    DictionaryFormat,
    Document,
    ModelBackend,
    ModelBackendBase,
    steering_missing,
)
from featurelens.core.host.protocols.records import (
    Example,
    FeatureRecord,
)
from featurelens.core.host.protocols.providers import (
    BatchClient,
    BatchLimits,
    BatchState,
    LLMProvider,
    LLMProviderBase,
    LLMRequest,
    LLMResponse,
    Price,
    PromptCache,
    ProviderInfo,
    RequestTokens,
    TokenCounter,
    TokenLogprobs,
    close_provider,
    loop_done,
)
from featurelens.core.host.protocols.labelers import (
    ExampleFallbacks,
    ExampleKinds,
    ExampleWidth,
    Explainer,
    ExplainerBase,
    ParseError,
    ScoreResult,
    Scorer,
    ScorerBase,
    example_fallbacks,
    example_kinds,
    example_width,
    needs_llm,
    score_takes_capabilities,
)
from featurelens.core.host.protocols.members import (
    declared,
)

__all__ = [
    'BatchClient',
    'BatchLimits',
    'BatchState',
    'CorpusSource',
    'DictionaryFormat',
    'Document',
    'Example',
    'ExampleFallbacks',
    'ExampleKinds',
    'ExampleWidth',
    'Explainer',
    'ExplainerBase',
    'FeatureRecord',
    'LLMProvider',
    'LLMProviderBase',
    'LLMRequest',
    'LLMResponse',
    'ModelBackend',
    'ModelBackendBase',
    'ParseError',
    'Price',
    'PromptCache',
    'ProviderInfo',
    'RequestTokens',
    'STEERING_MEMBERS',
    'ScoreResult',
    'Scorer',
    'ScorerBase',
    'TokenCounter',
    'TokenLogprobs',
    'close_provider',
    'declared',
    'example_fallbacks',
    'example_kinds',
    'example_width',
    'loop_done',
    'needs_llm',
    'score_takes_capabilities',
    'steering_missing',
]
