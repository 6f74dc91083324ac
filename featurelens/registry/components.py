"""Name -> component resolution, with collision checks and provenance.

The registry is filled by calling every ``register_*`` hook implementation one plugin
at a time, so each component is recorded with the plugin that provided it, and a name
taken twice is refused with a message naming both plugins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from featurelens.core.errors import PluginError, UnknownComponentError
from featurelens.core.host.protocols import ProviderInfo

#: Component kind -> the hook that registers it.
KINDS: dict[str, str] = {
    "model_backend": "register_model_backends",
    "dictionary_learner": "register_dictionary_learners",
    "dictionary_format": "register_dictionary_formats",
    "corpus_source": "register_corpus_sources",
    "explainer": "register_explainers",
    "scorer": "register_scorers",
    "llm_provider": "register_llm_providers",
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Component:
    """One registered component: what it is called, what builds it, who provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    #: What an LLM provider declares about itself (``None`` for other kinds).
    info: ProviderInfo | None = None

    def create(self, *args: Any, **options: Any) -> Any:
        """Build the component; the arguments are those its hook documents."""
        return self.factory(*args, **options)


@dataclass
class Registry:
    """All components, by kind and name."""

    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )

    def register(
        self,
        kind: str,
        plugin: str,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        info: ProviderInfo | None = None,
    ) -> Component:
        """Record ``name`` as provided by ``plugin``; refuse a name already taken.

        ``info`` is an LLM provider's declaration (a provider registered without one
        declares the defaults: no capabilities known before it is built, no batch API)."""
        if kind not in self.components:
            raise PluginError(f"Plugin {plugin!r} registered unknown component kind {kind!r}.")
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"Plugin {plugin!r} registered the {kind.replace('_', ' ')} name {name!r}; "
                "names must be lowercase letters, digits, '-' or '_'."
            )
        if not callable(factory):
            raise PluginError(
                f"Plugin {plugin!r} registered {kind.replace('_', ' ')} {name!r} with a "
                f"factory that is not callable ({type(factory).__name__})."
            )
        if info is not None and kind != "llm_provider":
            raise PluginError(
                f"Plugin {plugin!r} passed info= for {kind.replace('_', ' ')} {name!r}; only LLM "
                "providers declare a ProviderInfo, so leave it out.")
        if info is not None and not isinstance(info, ProviderInfo):
            raise PluginError(
                f"Plugin {plugin!r} registered LLM provider {name!r} with info of type "
                f"{type(info).__name__}; pass a featurelens.api.ProviderInfo.")
        if kind == "llm_provider" and info is None:
            info = ProviderInfo()
        existing = self.components[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"Plugin {plugin!r} tried to register {kind.replace('_', ' ')} {name!r}, "
                f"which plugin {existing.plugin!r} already provides; uninstall one of them "
                "or leave one out with FEATURELENS_LOAD_PLUGINS."
            )
        component = Component(kind, name, factory, plugin, description, info)
        self.components[kind][name] = component
        return component

    def names(self, kind: str) -> list[str]:
        """Sorted names of every component of ``kind``."""
        return sorted(self.components[kind])

    def get(self, kind: str, spec: str) -> Component:
        """Resolve ``spec`` to a component of ``kind``.

        For LLM providers ``spec`` is ``provider:model`` and only the provider part is
        looked up; :func:`split_llm_spec` separates the two.
        """
        name = split_llm_spec(spec)[0] if kind == "llm_provider" else spec
        try:
            return self.components[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise UnknownComponentError(
                f"No {kind.replace('_', ' ')} is called {name!r}; known: {known}. "
                "Install a plugin that provides it, or pick a known name."
            ) from None

    def by_plugin(self, plugin: str) -> list[Component]:
        """Every component that ``plugin`` registered, in kind then name order."""
        return [
            component
            for kind in KINDS
            for _, component in sorted(self.components[kind].items())
            if component.plugin == plugin
        ]


def split_llm_spec(spec: str) -> tuple[str, str]:
    """Split ``openai:gpt-4o-mini`` into ``("openai", "gpt-4o-mini")``.

    The model part may itself contain colons (``ollama`` tags such as ``llama3:8b``).
    """
    provider, sep, model = spec.partition(":")
    if not sep or not provider or not model:
        raise UnknownComponentError(
            f"LLM {spec!r} is not of the form provider:model; "
            "write for example openai:gpt-4o-mini, anthropic:claude-haiku-4-5 or local:smollm2."
        )
    return provider, model
