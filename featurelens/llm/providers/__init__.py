"""LLM providers: ``openai``, ``anthropic`` and ``local``, chosen as ``provider:model``.

Each provider turns a provider-neutral :class:`~featurelens.core.host.protocols.LLMRequest`
into its SDK's call and the answer back into an :class:`LLMResponse`. They never retry
(the engine does, with one policy for all), and read API keys only from environment
variables.
"""

from __future__ import annotations

import os
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.registry.components import split_llm_spec


def build_provider(spec: str, **options: Any):
    """Build the provider for ``provider:model`` (``openai:gpt-4o-mini``, ``local:smollm2``)."""
    from featurelens.core.host.manager import create

    _, model = split_llm_spec(spec)
    try:
        return create("llm_provider", spec, model, **options)
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise FeaturelensError(
            f"The LLM {spec} does not take the option(s) {', '.join(sorted(options))} ({error}); "
            "check --provider-option against the provider's documented options.") from None


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
