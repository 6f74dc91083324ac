"""Counting a request's input tokens the way its provider will bill them (``--dry-run``).

- ``openai``: tiktoken with the model's encoding (``o200k_base`` for current models,
  ``cl100k_base`` for GPT-4 / GPT-3.5, ``o200k_base`` for names tiktoken does not know,
  e.g. a local vLLM server), plus the chat format's framing: 3 tokens a message and 3
  that prime the reply (the count OpenAI's cookbook gives for its chat models).
- ``local``: the model's own tokenizer through its chat template, exactly as the local
  provider builds the prompt.
- ``anthropic``: Anthropic publishes no tokenizer, so the count is ``o200k_base`` ×
  :data:`ANTHROPIC_PER_O200K` (a published comparison of Claude 3.5 Sonnet and GPT-4o found
  Claude's tokenizer 20-30 % longer on the same text; the middle is used). An estimate,
  said so in the dry run's output.
- anything else: ``o200k_base``, labelled as a stand-in.

tiktoken downloads a vocabulary once and caches it (``$TIKTOKEN_CACHE_DIR``); offline,
without that cache, counting falls back to 4 characters a token and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from featurelens.core.host.protocols import LLMRequest

#: Claude tokens per o200k_base token (see the module docstring for where it comes from).
ANTHROPIC_PER_O200K = 1.25
#: Chat framing per message and for the reply's start (OpenAI chat models).
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMER = 3


@dataclass
class TokenCounter:
    """``count(request) -> int`` and a one-line description of how it counts."""

    method: str
    count_text: Callable[[str], int]
    per_message: int = TOKENS_PER_MESSAGE
    primer: int = TOKENS_REPLY_PRIMER
    scale: float = 1.0
    count_request: Callable[[LLMRequest], int] | None = None

    def count(self, request: LLMRequest) -> int:
        if self.count_request is not None:
            return self.count_request(request)
        if request.prompt is not None and not request.messages:
            return round(self.scale * self.count_text(request.prompt))
        body = sum(self.count_text(str(m.get("content", ""))) + self.per_message for m in request.messages)
        return round(self.scale * (body + self.primer))


def _characters(text: str) -> int:
    return len(text) // 4


def _tiktoken(encoding_name: str) -> Callable[[str], int] | str:
    """The encoder's count function, or why it cannot be had."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(encoding_name)
    except Exception as error:  # noqa: BLE001 - offline without a cache, or tiktoken missing
        return f"{type(error).__name__}: {' '.join(str(error).split())[:120]}"
    encode = encoding.encode_ordinary
    return lambda text: len(encode(text))


def encoding_for(model: str) -> str:
    """tiktoken's encoding name for an OpenAI model; ``o200k_base`` when it does not know it."""
    try:
        import tiktoken

        return tiktoken.encoding_name_for_model(model)
    except Exception:  # noqa: BLE001 - unknown model names (local servers) or no tiktoken
        return "o200k_base"


def _bpe_counter(encoding_name: str, label: str, scale: float = 1.0) -> TokenCounter:
    counted = _tiktoken(encoding_name)
    if isinstance(counted, str):
        return TokenCounter(f"about 4 characters a token ({encoding_name} unavailable: {counted})",
                            _characters, scale=scale)
    return TokenCounter(label, counted, scale=scale)


def _local_counter(model: str) -> TokenCounter:
    from transformers import AutoTokenizer

    from featurelens.llm.providers.local.provider import resolve_model_path

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

    return TokenCounter(f"the model's own tokenizer ({path.name})", _characters, count_request=count)


def counter_for(provider: str, model: str, options: dict[str, Any] | None = None) -> TokenCounter:
    """How to count input tokens for ``provider:model``."""
    if provider == "openai":
        name = encoding_for(model)
        return _bpe_counter(name, f"tiktoken {name}")
    if provider == "anthropic":
        return _bpe_counter("o200k_base", f"estimated: tiktoken o200k_base × {ANTHROPIC_PER_O200K} "
                            "(Anthropic publishes no tokenizer)", scale=ANTHROPIC_PER_O200K)
    if provider == "local":
        return _local_counter(model)
    return _bpe_counter("o200k_base", f"tiktoken o200k_base (no tokenizer known for {provider})")
