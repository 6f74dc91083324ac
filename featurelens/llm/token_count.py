"""Counting a request's input tokens the way its provider will bill them (``--dry-run``).

Each provider declares its counter (``ProviderInfo.token_counter``, see
:mod:`featurelens.llm.providers.declarations` for the built-ins); a provider that
declares none is counted with ``o200k_base``, labelled as a stand-in. The counting
itself is :class:`~featurelens.core.host.protocols.TokenCounter`: each message's text
plus the chat format's framing (3 tokens a message and 3 that prime the reply, the
count OpenAI's cookbook gives for its chat models), times a scale for tokenizers known
only as a ratio to another.

tiktoken downloads a vocabulary once and caches it (``$TIKTOKEN_CACHE_DIR``); offline,
without that cache, counting falls back to 4 characters a token and says so.
"""

from __future__ import annotations

from typing import Any, Callable

from featurelens.core.host.protocols import TokenCounter

__all__ = ["TokenCounter", "bpe_counter", "counter_for"]


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


def bpe_counter(encoding_name: str, label: str, scale: float = 1.0) -> TokenCounter:
    """A counter with tiktoken's ``encoding_name`` (or 4 characters a token, said so, without it)."""
    counted = _tiktoken(encoding_name)
    times = f" × {scale:g}" if scale != 1.0 else ""
    if isinstance(counted, str):
        return TokenCounter(f"about 4 characters a token ({encoding_name} unavailable: {counted})",
                            _characters, scale=scale, name="~4 characters a token" + times)
    return TokenCounter(label, counted, scale=scale, name=encoding_name + times)


def counter_for(provider: str, model: str, options: dict[str, Any] | None = None) -> TokenCounter:
    """How to count input tokens for ``provider:model``: its declared counter, else o200k_base."""
    from featurelens.llm.providers import provider_info

    make = provider_info(provider).token_counter
    if make is not None:
        return make(model)
    return bpe_counter("o200k_base", f"tiktoken o200k_base (no tokenizer known for {provider})")
