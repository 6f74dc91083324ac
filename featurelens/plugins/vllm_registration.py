"""Registers the ``vllm`` provider (featurelens.scale.vllm_provider) through the same hook as
the built-in providers. Nothing is imported until a ``vllm:`` model is asked for, and
where vLLM is missing that request is refused in one sentence saying how to install it."""

from __future__ import annotations

from typing import Any

import featurelens
from featurelens.core.host.protocols import ProviderInfo

featurelens_api = 1


def _vllm(model: str, **options: Any):
    from featurelens.scale.vllm_provider import VllmProvider

    return VllmProvider(model, **options)


#: Known without building the provider, so dry runs plan the all-at-once simulation.
VLLM = ProviderInfo(capabilities=frozenset({"output_logprobs", "prompt_logprobs"}))


@featurelens.hookimpl
def register_llm_providers(register) -> None:
    register("vllm", _vllm, description="vLLM batch inference on Ray through ray.data.llm, a GPU "
             "per replica (pip install 'featurelens[vllm]'); e.g. vllm:Qwen/Qwen2.5-7B-Instruct", info=VLLM)
