"""The response cache: equal (provider, model, request) never pays twice.

Keys hash the provider, the model and :meth:`LLMRequest.cache_material`; values are
whole :class:`LLMResponse` objects as JSON in the store's ``llm_cache`` table. Lookups
are made per chunk of jobs (one query), never per request, so a cache check costs far
less than a call.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from featurelens.core.host.protocols import LLMRequest, LLMResponse, TokenLogprobs
from featurelens.core.store.database import Store


def cache_key(provider: str, model: str, request: LLMRequest) -> str:
    """64 hex characters (also a valid batch ``custom_id`` for both providers)."""
    material = {"provider": provider, "model": model, **request.cache_material()}
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _logprobs_data(items: list[TokenLogprobs]) -> list[dict[str, Any]]:
    return [{"token": i.token, "logprob": i.logprob, "top": i.top} for i in items]


def response_to_json(response: LLMResponse) -> str:
    """Serialise a response for the cache (the raw provider payload is left out: it can be
    large). Built by hand: ``dataclasses.asdict`` deep-copies and was a hot spot."""
    data = {"text": response.text, "input_tokens": response.input_tokens,
            "output_tokens": response.output_tokens,
            "cached_input_tokens": response.cached_input_tokens,
            "output_logprobs": _logprobs_data(response.output_logprobs),
            "prompt_logprobs": _logprobs_data(response.prompt_logprobs)}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _logprobs(items: list[dict[str, Any]]) -> list[TokenLogprobs]:
    return [TokenLogprobs(i["token"], i.get("logprob"), dict(i.get("top") or {})) for i in items]


def response_from_json(text: str) -> LLMResponse:
    """Inverse of :func:`response_to_json`."""
    data = json.loads(text)
    return LLMResponse(
        text=data["text"],
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        cached_input_tokens=int(data.get("cached_input_tokens") or 0),
        output_logprobs=_logprobs(data.get("output_logprobs") or []),
        prompt_logprobs=_logprobs(data.get("prompt_logprobs") or []),
    )


def lookup(store: Store, keys: Iterable[str]) -> dict[str, LLMResponse]:
    """The cached responses among ``keys``, one query per :data:`LOOKUP_KEYS` keys.

    The keys go in as an ``IN`` list of values, which DuckDB answers from the primary
    key's index: a join would scan every cached key per chunk, a cost that grows with the
    cache (a million-feature run holds a million answers)."""
    wanted = sorted(set(keys))
    rows: list[tuple[str, str]] = []
    for start in range(0, len(wanted), LOOKUP_KEYS):
        part = wanted[start:start + LOOKUP_KEYS]
        rows += store.con.execute(
            f"SELECT cache_key, CAST(response AS VARCHAR) FROM llm_cache "
            f"WHERE cache_key IN ({','.join('?' * len(part))})", part).fetchall()
    return {key: response_from_json(text) for key, text in rows}


#: Keys per lookup query (an index lookup each; long lists stay cheap to bind).
LOOKUP_KEYS = 512
