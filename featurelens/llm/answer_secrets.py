"""A key a server echoes in an *answer* never reaches the store.

Error bodies are redacted where they are stored (:mod:`featurelens.core.redaction`), but a
hostile or misconfigured server can also put the key into a 200 answer ("Explanation:
your key is sk-..."), which would become an explanation, a cached response, a journal
line and ``failures.answer``. Every answer is therefore scrubbed of the configured key
values (and their encoded forms: stripped, URL-quoted, hex, base64) the moment it
arrives, live or from a provider batch, in every field it has: the text, each log-prob
token and each of its alternatives (a key spread over several tokens masks every token
it touches), and every string inside the raw provider payload. Only exact values are
masked: an answer's words ("Bearer tokens") are content.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from featurelens.core.host.protocols import LLMResponse, TokenLogprobs
from featurelens.core.redaction import MASK, configured_secrets, redact_values


def _deep(value: Any, secrets: list[str]) -> Any:
    """Every string in a JSON-like value (keys included) with the secrets masked."""
    if isinstance(value, str):
        return redact_values(value, secrets)
    if isinstance(value, dict):
        return {_deep(k, secrets): _deep(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep(v, secrets) for v in value]
    return value


def _tokens(items: list[TokenLogprobs], secrets: list[str]) -> list[TokenLogprobs]:
    """The tokens with the secrets masked inside each token and each alternative, and every
    token that holds part of a secret spread over several tokens replaced by the mask."""
    if not items:
        return items
    joined = "".join(i.token or "" for i in items)
    spans = []
    for secret in secrets:
        start = joined.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret)))
            start = joined.find(secret, start + 1)
    out = []
    position = 0
    for item in items:
        token = item.token or ""
        begin, end = position, position + len(token)
        position = end
        if any(a < end and begin < b for a, b in spans):
            token = MASK
        else:
            token = redact_values(token, secrets) if isinstance(item.token, str) else item.token
        top = {redact_values(k, secrets): v for k, v in item.top.items()}
        out.append(TokenLogprobs(token, item.logprob, top))
    return out


def _holds(response: LLMResponse, secrets: list[str]) -> bool:
    """Whether any field may hold a secret (cheap test first: most answers hold none)."""
    texts = [response.text or ""]
    for items in (response.output_logprobs, response.prompt_logprobs):
        if items:
            texts.append("".join(i.token or "" for i in items))
            texts.extend(k for i in items for k in i.top)
    if response.raw:
        texts.append(repr(response.raw))
    return any(s in t for s in secrets for t in texts)


def scrub(response: LLMResponse, secrets: list[str] | None = None) -> LLMResponse:
    """``response`` with every configured key value masked in every field (the same object
    when there is none, which is the rule)."""
    secrets = configured_secrets() if secrets is None else secrets
    if not secrets or not _holds(response, secrets):
        return response
    return dataclasses.replace(
        response, text=redact_values(response.text, secrets),
        output_logprobs=_tokens(response.output_logprobs, secrets),
        prompt_logprobs=_tokens(response.prompt_logprobs, secrets),
        raw=_deep(response.raw, secrets) if response.raw else response.raw)
