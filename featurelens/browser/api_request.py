"""What the OpenAI-compatible steering endpoint accepts, checked before the model runs.

A request is refused with a status and one sentence when its body is not what an OpenAI
client sends: no or unreadable ``Content-Length``, a content type other than JSON (a
``text/plain`` POST is one a web page may send cross-site without asking, so the API
takes ``application/json`` only), JSON nested past what the parser can hold, or numbers
outside what generation can use (``max_tokens`` 0 is an error, as on OpenAI's API, not a
silent 16; ``NaN`` temperatures are refused).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, BinaryIO, Mapping

from featurelens.core.cli.numbers import SEED_MAX, SEED_MIN

#: The most bytes one request body may hold.
BODY_LIMIT = 1 << 20


class ApiError(Exception):
    """A request the endpoint refuses: an HTTP status and one sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def read_json_body(headers: Mapping[str, str], stream: BinaryIO) -> dict[str, Any]:
    """The request's JSON object, or :class:`ApiError` saying what is wrong with it."""
    kind = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                       f"Send the body as application/json (got {kind or 'no content type'!r}).")
    text = (headers.get("Content-Length") or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise ApiError(HTTPStatus.LENGTH_REQUIRED,
                       "Send a Content-Length header with the body's size in bytes.")
    length = int(text)
    if not 0 < length <= BODY_LIMIT:
        raise ApiError(HTTPStatus.BAD_REQUEST if length == 0 else HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"Send a JSON body of 1 to {BODY_LIMIT} bytes.")
    try:
        raw = stream.read(length)
    except OSError:  # the socket timed out (a client that never sends its body) or was reset
        raise ApiError(HTTPStatus.REQUEST_TIMEOUT, "The body did not arrive in time; send it with the request.") \
            from None
    if len(raw) < length:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"The body ended after {len(raw)} of {length} bytes; send all of it.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(HTTPStatus.BAD_REQUEST, "The body is not a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "The body is not a JSON object.")
    return body


@dataclass(frozen=True)
class CompletionParams:
    """The generation settings of one request."""

    max_tokens: int
    temperature: float
    top_p: float
    n: int
    seed: int


def _integer(body: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(HTTPStatus.BAD_REQUEST, f'"{key}" must be a whole number from {low} to {high}, not {value!r}.')
    return value


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float,
            low_open: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (low < value if low_open else low <= value) and value <= high
    if not ok:
        interval = f"{'above' if low_open else 'from'} {low:g} {'and at most' if low_open else 'to'} {high:g}"
        raise ApiError(HTTPStatus.BAD_REQUEST, f'"{key}" must be a number {interval}, not {value!r}.')
    return float(value)


def completion_params(body: Mapping[str, Any], max_tokens_limit: int) -> CompletionParams:
    """Generation settings from an OpenAI request body, each checked (module docstring)."""
    key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    return CompletionParams(
        max_tokens=_integer(body, key, 16, 1, max_tokens_limit),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        n=_integer(body, "n", 1, 1, 16),
        seed=_integer(body, "seed", 0, SEED_MIN, SEED_MAX),
    )
