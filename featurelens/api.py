"""The one module plugin authors import: everything a featurelens plugin needs.

Internal modules move; this one keeps its names. A plugin (and its tests) should
import only ``featurelens`` and ``featurelens.api``::

    import featurelens
    from featurelens.api import Dictionary, FeaturelensError, FeatureRecord

Names are loaded on first use, so importing this module (as every plugin does when the
CLI starts) costs nothing; ``Dictionary`` pulls in torch only when a plugin asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from featurelens import PLUGIN_API_VERSION, hookimpl, open_store

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and readers
    # ruff: noqa: F401
    from featurelens.core.cli.options import store_option
    from featurelens.core.model.causal_lm import CausalLM
    from featurelens.core.dictionaries.base import Dictionary
    from featurelens.core.errors import (
        FeaturelensError,
        PluginError,
        StoreError,
        UnknownComponentError,
    )
    from featurelens.core.host.hookspecs import Register
    from featurelens.core.host.manager import build_host, create, get_registry
    from featurelens.core.host.protocols import (
        BatchClient,
        BatchLimits,
        BatchState,
        CorpusSource,
        DictionaryFormat,
        Document,
        Example,
        Explainer,
        ExplainerBase,
        FeatureRecord,
        LLMProvider,
        LLMProviderBase,
        LLMRequest,
        LLMResponse,
        ModelBackend,
        ModelBackendBase,
        ParseError,
        Price,
        PromptCache,
        ProviderInfo,
        Scorer,
        ScorerBase,
        ScoreResult,
        TokenCounter,
        TokenLogprobs,
    )
    from featurelens.core.store.database import Store

#: Public name -> the module that defines it.
_SOURCES: dict[str, str] = {
    "CausalLM": "featurelens.core.model.causal_lm",
    "store_option": "featurelens.core.cli.options",
    "Dictionary": "featurelens.core.dictionaries.base",
    "FeaturelensError": "featurelens.core.errors",
    "PluginError": "featurelens.core.errors",
    "StoreError": "featurelens.core.errors",
    "UnknownComponentError": "featurelens.core.errors",
    "Register": "featurelens.core.host.hookspecs",
    "build_host": "featurelens.core.host.manager",
    "create": "featurelens.core.host.manager",
    "get_registry": "featurelens.core.host.manager",
    "Store": "featurelens.core.store.database",
    **{name: "featurelens.core.host.protocols" for name in (
        "BatchClient", "BatchLimits", "BatchState", "CorpusSource", "DictionaryFormat", "Document",
        "Example", "Explainer", "ExplainerBase", "FeatureRecord", "LLMProvider", "LLMProviderBase",
        "LLMRequest", "LLMResponse", "ModelBackend", "ModelBackendBase", "ParseError", "Price", "PromptCache",
        "ProviderInfo", "Scorer", "ScorerBase", "ScoreResult", "TokenCounter", "TokenLogprobs")},
}

__all__ = sorted(["PLUGIN_API_VERSION", "hookimpl", "open_store", *_SOURCES])


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"featurelens.api has no {name!r}; see docs/plugins.md for what it offers")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
