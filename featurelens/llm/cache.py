"""The response cache: equal (provider, model, request) never pays twice.

Keys hash the provider, the model and :meth:`LLMRequest.cache_material`; values are
whole :class:`LLMResponse` objects as JSON in the store's ``llm_cache`` table. Lookups
are made per chunk of jobs (one query), never per request, so a cache check costs far
less than a call. A row is checked by shape before it is used: one that is not an
answer's shape (valid JSON or not) is no hit, so its request is sent again, and it is
deleted when the store is writable, so the new answer takes its place.
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


def _count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53)


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _items_ok(items: Any) -> bool:
    return items is None or (isinstance(items, list) and all(
        isinstance(i, dict) and isinstance(i.get("token"), str) and _number(i.get("logprob"))
        and (i.get("top") is None or (isinstance(i["top"], dict)
                                      and all(_number(v) and v is not None for v in i["top"].values())))
        for i in items))


def checked_response(text: str) -> LLMResponse | None:
    """The response in ``text`` when it has the shape :func:`response_to_json` writes
    (text a string, counts whole numbers, log-probs tokens with numbers), else ``None``."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("text"), str)
            and all(_count(data.get(k)) for k in ("input_tokens", "output_tokens", "cached_input_tokens"))
            and _items_ok(data.get("output_logprobs")) and _items_ok(data.get("prompt_logprobs"))):
        return None
    return _response(data)


def response_from_json(text: str) -> LLMResponse:
    """Inverse of :func:`response_to_json` (for text of that shape; see :func:`checked_response`)."""
    return _response(json.loads(text))


def _response(data: dict[str, Any]) -> LLMResponse:
    """The response a parsed :func:`response_to_json` text holds (parsed once: a
    collection reads a million of them)."""
    return LLMResponse(
        text=data["text"],
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        cached_input_tokens=int(data.get("cached_input_tokens") or 0),
        output_logprobs=_logprobs(data.get("output_logprobs") or []),
        prompt_logprobs=_logprobs(data.get("prompt_logprobs") or []),
    )


def lookup(store: Store, keys: Iterable[str]) -> dict[str, LLMResponse]:
    """The cached responses among ``keys``, one query per :data:`LOOKUP_KEYS` keys; rows
    not of an answer's shape are no hit (and are deleted from a writable store).

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
    found: dict[str, LLMResponse] = {}
    bad = []
    for key, text in rows:
        response = checked_response(text)
        if response is None:
            bad.append(key)
        else:
            found[key] = response
    if bad and not getattr(store, "read_only", True):
        store.execute(f"DELETE FROM llm_cache WHERE cache_key IN ({','.join('?' * len(bad))})", bad)
    return found


#: Keys per lookup query (an index lookup each; long lists stay cheap to bind).
LOOKUP_KEYS = 512
