"""Registers the built-in LLM providers through the same hook third-party ones use, each
with its declaration (:mod:`featurelens.llm.providers.declarations`)."""

from __future__ import annotations

from typing import Any

import featurelens
from featurelens.llm.providers.declarations import ANTHROPIC, LOCAL, OPENAI

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


@featurelens.hookimpl
def register_llm_providers(register) -> None:
    register("openai", _openai, description="OpenAI or any OpenAI-compatible server "
             "(OPENAI_API_KEY, OPENAI_BASE_URL); e.g. openai:gpt-4o-mini", info=OPENAI)
    register("anthropic", _anthropic, description="Anthropic Claude with prompt caching "
             "(ANTHROPIC_API_KEY); e.g. anthropic:claude-haiku-4-5", info=ANTHROPIC)
    register("local", _local, description="A transformers model in-process, no key; "
             "local:smollm2 (embedded) or local:/path/to/model", info=LOCAL)
