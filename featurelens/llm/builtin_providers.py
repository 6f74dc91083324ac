"""Registers the built-in LLM providers through the same hook third-party ones use."""

from __future__ import annotations

from typing import Any

import featurelens

featurelens_api = 1


def _openai(model: str, **options: Any):
    from featurelens.llm.providers.openai_provider import OpenAIProvider

    return OpenAIProvider(model, **options)


def _anthropic(model: str, **options: Any):
    from featurelens.llm.providers.anthropic_provider import AnthropicProvider

    return AnthropicProvider(model, **options)


def _local(model: str, **options: Any):
    from featurelens.llm.providers.local.provider import LocalProvider

    return LocalProvider(model, **options)


# Capabilities that do not depend on options, readable without building a client (dry
# runs plan a scorer's mode from them without needing a key). OpenAI's depend on the
# base URL, so its factory has none and a dry run builds the provider to ask.
_anthropic.capabilities = frozenset({"batch_api", "prompt_cache"})  # type: ignore[attr-defined]
_local.capabilities = frozenset({"output_logprobs", "prompt_logprobs"})  # type: ignore[attr-defined]


@featurelens.hookimpl
def register_llm_providers(register) -> None:
    register("openai", _openai, description="OpenAI or any OpenAI-compatible server "
             "(OPENAI_API_KEY, OPENAI_BASE_URL); e.g. openai:gpt-4o-mini")
    register("anthropic", _anthropic, description="Anthropic Claude with prompt caching "
             "(ANTHROPIC_API_KEY); e.g. anthropic:claude-haiku-4-5")
    register("local", _local, description="A transformers model in-process, no key; "
             "local:smollm2 (embedded) or local:/path/to/model")
