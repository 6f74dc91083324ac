"""LLM providers: ``openai``, ``anthropic`` and ``local``, chosen as ``provider:model``.

Each provider turns a provider-neutral :class:`~featurelens.core.host.protocols.LLMRequest`
into its SDK's call and the answer back into an :class:`LLMResponse`. They never retry
(the engine does, with one policy for all), and read API keys only from environment
variables. What a provider can do, how it counts and what it costs is its
:class:`~featurelens.core.host.protocols.ProviderInfo`, read with :func:`provider_info`
(the built-ins' are in :mod:`.declarations`).
"""

from __future__ import annotations

import os
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ProviderInfo
from featurelens.registry.components import Component, split_llm_spec


def build_provider(spec: Any, **options: Any):
    """Build the provider for ``provider:model`` (``openai:gpt-4o-mini``, ``local:smollm2``), or
    for a job's already resolved choice (:class:`featurelens.llm.stage.LLMChoice`: its spec is
    not split again, its registry entry not looked up again)."""
    if isinstance(spec, str):
        from featurelens.core.host.manager import get_registry

        provider, model = split_llm_spec(spec)
        component, name = provider_component(provider) or get_registry().get("llm_provider", spec), spec
    else:
        if spec.component is None:
            spec.check()  # one sentence naming the known providers
        component, model, name = spec.component, spec.model, spec.spec
    try:
        return component.create(model, **options)
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise FeaturelensError(
            f"The LLM {name} does not take the option(s) {', '.join(sorted(options))} ({error}); "
            "check --provider-option against the provider's documented options.") from None


def provider_component(provider: str) -> Component | None:
    """The registry entry of the provider named ``provider`` (no model part), or ``None``."""
    from featurelens.core.host.manager import get_registry

    return get_registry().components["llm_provider"].get(provider)


def provider_info(name: str) -> ProviderInfo:
    """What the provider ``name`` (or ``name:model``) declared at registration; the defaults
    (nothing known before it is built) for a name no plugin registered."""
    component = provider_component(name.partition(":")[0])
    info = component.info if component is not None else None
    return info if info is not None else ProviderInfo()


def api_key(env: str, spec: str, *, required: bool = True) -> str | None:
    """The key in ``$env``; a clear error naming the variable when it is required and unset."""
    key = os.environ.get(env, "").strip()
    if key:
        return key
    if required:
        raise FeaturelensError(
            f"{spec} needs an API key: set the {env} environment variable "
            "(keys are read only from the environment, never from options or the store).")
    return None
