"""The base URLs the OpenAI and Anthropic SDKs are pointed at, for a test server on a local port."""

from __future__ import annotations


class ProviderURLs:
    """Mixin: ``openai_url`` and ``anthropic_url`` from the server's ``port``."""

    port: int

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
