"""Counting prompt tokens with o200k, the tokenizer of the OpenAI models people label with.

Costs are quoted per token, so an estimate is only as good as its count. tiktoken's
``o200k_base`` is used when it can be loaded (tiktoken downloads its vocabulary once
and caches it; offline, put the file in ``$TIKTOKEN_CACHE_DIR``); otherwise counts fall
back to about four characters a token and say so (``Counter.exact`` is false).
Benchmarks count with it; ``estimate`` and ``--dry-run`` count with each provider's
declared counter (:func:`featurelens.llm.token_count.counter_for`).

A request's *shared prefix* is the part identical across features (instructions,
few-shot turns): chat requests name it by ``LLMRequest.shared_prefix`` messages;
completion prompts by ``LLMRequest.shared_prompt_chars``. Its tokens are what a
provider's prompt cache can serve.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from featurelens.core.host.protocols import LLMRequest, RequestTokens, TokenCounter

__all__ = ["Counter", "RequestTokens"]

ENCODING = "o200k_base"
#: Tokens a chat message costs beyond its text (role and separators; OpenAI's rule of thumb).
PER_MESSAGE = 4


@lru_cache(maxsize=1)
def _encoding() -> Any | None:
    try:
        import tiktoken

        return tiktoken.get_encoding(ENCODING)
    except Exception:  # noqa: BLE001 - no tiktoken, or no vocabulary offline: estimate instead
        return None


class Counter:
    """Counts text and requests with o200k (or ~4 characters a token when unavailable),
    memoising short texts (shared prefixes repeat); requests are counted by the one
    :class:`~featurelens.core.host.protocols.TokenCounter` every count goes through."""

    def __init__(self, exact: bool | None = None):
        encoding = _encoding() if exact is not False else None
        self.exact = encoding is not None
        self._count: Callable[[str], int] = (
            (lambda text: len(encoding.encode(text, disallowed_special=())))
            if encoding is not None else (lambda text: (len(text) + 3) // 4))
        self._memo: dict[str, int] = {}
        self.counter = TokenCounter(self.name, self.text, per_message=PER_MESSAGE, primer=3,
                                    name=self.name)

    @property
    def name(self) -> str:
        return ENCODING if self.exact else "~4 characters a token (o200k unavailable)"

    def text(self, text: str) -> int:
        """Tokens of ``text``; repeated texts (shared prefixes) are counted once."""
        if len(text) > 256:
            return self._count(text)
        found = self._memo.get(text)
        if found is None:
            found = self._memo[text] = self._count(text)
        return found

    def request(self, request: LLMRequest) -> RequestTokens:
        """Input tokens of ``request`` and of its shared prefix."""
        return self.counter.tokens(request)
