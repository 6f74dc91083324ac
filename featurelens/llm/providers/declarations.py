"""What each built-in provider declares about itself (:class:`ProviderInfo`), without its SDK.

The declarations are read at registration, when the CLI starts, so this module imports
neither the openai nor the anthropic SDK nor transformers: token counters and batch
clients are built on first use.

- ``openai``: tiktoken with the model's encoding (``o200k_base`` for current models,
  ``cl100k_base`` for GPT-4 / GPT-3.5, ``o200k_base`` for names tiktoken does not know,
  e.g. a local vLLM server), plus the chat format's framing. The prompt cache serves
  prompts of at least 1,024 tokens, in steps of 128 tokens of the longest prefix seen
  before, with nothing to mark. Capabilities depend on the base URL: a custom server
  may answer prompt log-probabilities (``echo``), OpenAI's own API does not.
- ``anthropic``: Anthropic publishes no tokenizer, so the count is ``o200k_base`` ×
  :data:`ANTHROPIC_PER_O200K` (a published comparison of Claude 3.5 Sonnet and GPT-4o
  found Claude's tokenizer 20-30 % longer on the same text; the middle is used). The
  cache serves the prefix ``cache_control`` marks once it reaches the model's minimum:
  1,024 tokens for Sonnet 4.5 / Opus 4.1 and older Sonnets, 2,048 for Haiku 3 / 3.5,
  4,096 for Haiku 4.5 and Opus 4.5+ (writing it costs 1.25x input once per five
  minutes, negligible over a long run and left out).
- ``local``: the model's own tokenizer through its chat template, exactly as the local
  provider builds the prompt; free, and nothing to cache for money.

Hosted models read four features in one explanation request without trouble
(:mod:`featurelens.labelers.explain_grouped`); a 135M local model cannot keep four
apart, so it keeps one. Both hosted APIs refuse ``max_tokens=0``, so a prompt log-prob
pass bills at least one output token. Prices are list prices (USD per million tokens)
when this file was written; ``--prices`` or ``$FEATURELENS_PRICES`` replace them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from featurelens.core.host.protocols import (
    BatchClient,
    LLMRequest,
    Price,
    PromptCache,
    ProviderInfo,
    TokenCounter,
)
from featurelens.llm.token_count import bpe_counter

OPENAI_BASE_ENV = "OPENAI_BASE_URL"
#: Claude tokens per o200k_base token (see the module docstring for where it comes from).
ANTHROPIC_PER_O200K = 1.25
OPENAI_CACHE = PromptCache(1024, 128)
#: Anthropic's minimum cacheable prefix by model-name fragment (first match wins).
ANTHROPIC_MINIMUMS = (("haiku-4", 4096), ("opus-4-5", 4096), ("opus-4-6", 4096),
                      ("haiku", 2048), ("", 1024))
#: Features an explanation request carries by default on the hosted APIs.
HOSTED_FEATURES_PER_REQUEST = 4


def openai_capabilities(options: Mapping[str, Any]) -> frozenset[str]:
    """What ``openai:`` honours when built with ``options`` (``base_url``, ``prompt_logprobs``)."""
    base_url = options.get("base_url") or os.environ.get(OPENAI_BASE_ENV) or None
    custom = base_url is not None and "api.openai.com" not in base_url
    caps = {"output_logprobs", "batch_api", "prompt_cache"}
    prompt_logprobs = options.get("prompt_logprobs")
    if prompt_logprobs if prompt_logprobs is not None else custom:
        caps.add("prompt_logprobs")
    return frozenset(caps)


def encoding_for(model: str) -> str:
    """tiktoken's encoding name for an OpenAI model; ``o200k_base`` when it does not know it."""
    try:
        import tiktoken

        return tiktoken.encoding_name_for_model(model)
    except Exception:  # noqa: BLE001 - unknown model names (local servers) or no tiktoken
        return "o200k_base"


def _openai_counter(model: str) -> TokenCounter:
    name = encoding_for(model)
    return bpe_counter(name, f"tiktoken {name}")


def _anthropic_counter(model: str) -> TokenCounter:
    return bpe_counter("o200k_base", f"estimated: tiktoken o200k_base × {ANTHROPIC_PER_O200K} "
                       "(Anthropic publishes no tokenizer)", scale=ANTHROPIC_PER_O200K)


def _local_counter(model: str) -> TokenCounter:
    from transformers import AutoTokenizer

    from featurelens.llm.providers.local.model_path import resolve_model_path

    path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def count(request: LLMRequest) -> int:
        if request.prompt is not None and not request.messages:
            return len(tokenizer(request.prompt).input_ids)
        last = bool(request.messages) and request.messages[-1].get("role") == "assistant"
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(request.messages, tokenize=False,
                                                 add_generation_prompt=not last,
                                                 continue_final_message=last)
        else:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in request.messages)
            text += "" if last else "\n\nassistant:"
        return max(1, len(tokenizer(text, add_special_tokens=False).input_ids))

    return TokenCounter(f"the model's own tokenizer ({path.name})", lambda text: len(text) // 4,
                        count_request=count)


def _anthropic_cache(model: str) -> PromptCache:
    return PromptCache(next(size for fragment, size in ANTHROPIC_MINIMUMS if fragment in model))


def _own_batches(provider: Any) -> BatchClient:
    """The batch client a built-in provider keeps beside itself (``OpenAIBatches``,
    ``AnthropicBatches``), so this module needs neither SDK."""
    return provider.batch_client()


OPENAI = ProviderInfo(
    capabilities=frozenset({"output_logprobs", "batch_api", "prompt_cache"}),
    capabilities_with=openai_capabilities,
    token_counter=_openai_counter, prompt_cache=lambda model: OPENAI_CACHE,
    batch_client=_own_batches, features_per_request=HOSTED_FEATURES_PER_REQUEST, min_output_tokens=1,
    prices={
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "gpt-4o": Price(2.50, 10.00, 1.25),
        "gpt-4.1": Price(2.00, 8.00, 0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "gpt-5-mini": Price(0.25, 2.00, 0.025),
        "gpt-5-nano": Price(0.05, 0.40, 0.005),
    })

ANTHROPIC = ProviderInfo(
    capabilities=frozenset({"batch_api", "prompt_cache"}), token_counter=_anthropic_counter,
    prompt_cache=_anthropic_cache, batch_client=_own_batches,
    features_per_request=HOSTED_FEATURES_PER_REQUEST, min_output_tokens=1,
    prices={
        "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
        "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
        "claude-3-5-haiku-latest": Price(0.80, 4.00, 0.08),
    })

LOCAL = ProviderInfo(capabilities=frozenset({"output_logprobs", "prompt_logprobs"}),
                     token_counter=_local_counter, free=True)
