"""A key a server echoes in an *answer* never reaches the store.

Error bodies are redacted where they are stored (:mod:`featurelens.core.redaction`), but a
hostile or misconfigured server can also put the key into a 200 answer ("Explanation:
your key is sk-..."), which would become an explanation, a cached response, a journal
line and ``failures.answer``. Every answer is therefore scrubbed of the configured key
values (and their encoded forms) the moment it arrives, live or from a provider batch.
Only exact values are masked: an answer's words ("Bearer tokens") are content.
"""

from __future__ import annotations

import dataclasses

from featurelens.core.host.protocols import LLMResponse
from featurelens.core.redaction import configured_secrets, redact_values


def scrub(response: LLMResponse, secrets: list[str] | None = None) -> LLMResponse:
    """``response`` with every configured key value masked in its text (the same object
    when there is none, which is the rule)."""
    secrets = configured_secrets() if secrets is None else secrets
    text = redact_values(response.text, secrets)
    return response if text is response.text else dataclasses.replace(response, text=text)
