"""What the OpenAI-compatible steering endpoint accepts, checked before the model runs.

A request is refused with a status and one sentence when its body is not what an OpenAI
client sends: no or unreadable ``Content-Length``, a content type other than JSON (a
``text/plain`` POST is one a web page may send cross-site without asking, so the API
takes ``application/json`` only), JSON nested past what the parser can hold, or numbers
outside what generation can use (``max_tokens`` 0 is an error, as on OpenAI's API, not a
silent 16; ``NaN`` temperatures are refused). The work one request may ask for is bounded:
``max_tokens`` times ``n`` at most :data:`MAX_WORK_TOKENS`. Options an OpenAI client may
send that this endpoint does not implement (``logprobs``, ``stop``, ``echo``...) are
refused by name, never silently ignored. A ``Content-Length`` beyond the limit, however
many digits it has, is a 413.
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
#: The most tokens one request may generate over all its samples (``max_tokens`` x ``n``).
MAX_WORK_TOKENS = 2048
#: OpenAI request fields this endpoint does not implement: refused when set to anything
#: but their "off" value, so a client never believes it got what it asked for.
UNSUPPORTED = ("logprobs", "top_logprobs", "stop", "echo", "best_of", "suffix", "logit_bias",
               "presence_penalty", "frequency_penalty", "tools", "functions", "response_format")


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
    if not (text.isascii() and text.isdigit()):
        raise ApiError(HTTPStatus.LENGTH_REQUIRED,
                       "Send a Content-Length header with the body's size in bytes.")
    length = int(text) if len(text) <= 12 else BODY_LIMIT + 1  # no huge int for a huge number
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


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for key in UNSUPPORTED:
        value = body.get(key)
        if value is not None and value is not False and value != 0 and value != [] and value != {}:
            raise ApiError(HTTPStatus.BAD_REQUEST,
                           f'"{key}" is not supported by this endpoint; send the request without it.')


def completion_params(body: Mapping[str, Any], max_tokens_limit: int) -> CompletionParams:
    """Generation settings from an OpenAI request body, each checked (module docstring)."""
    _refuse_unsupported(body)
    key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    params = CompletionParams(
        max_tokens=_integer(body, key, 16, 1, max_tokens_limit),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        n=_integer(body, "n", 1, 1, 16),
        seed=_integer(body, "seed", 0, SEED_MIN, SEED_MAX),
    )
    if params.max_tokens * params.n > MAX_WORK_TOKENS:
        raise ApiError(HTTPStatus.BAD_REQUEST,
                       f'"{key}" x "n" is {params.max_tokens * params.n}, more than the {MAX_WORK_TOKENS} '
                       "tokens one request may generate; ask for fewer tokens or samples.")
    return params


def strength(value: Any, name: str = "strength") -> float:
    """A steering strength as a float: a number that is finite as a float (a 400-digit
    integer is not), else :class:`ApiError`."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        shown = repr(value)[:40] + ("..." if len(repr(value)) > 40 else "")
        raise ApiError(HTTPStatus.BAD_REQUEST, f'"{name}" is not a finite number ({shown}); send a number such as 8.')
    return number
