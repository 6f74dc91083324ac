"""The retry policy: which errors are worth retrying, and how long to wait.

Rate limits (429), server errors (5xx), timeouts and dropped connections are retried
with exponential backoff and full jitter, so many workers that failed together do not
come back together; a ``retry-after`` header, when the provider sends one, wins over
the computed delay. Rejected keys stop the whole run (every call would fail the same
way); other 4xx answers fail only the request that caused them.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.redaction import redact

_RETRY_STATUS = {408, 409, 425, 429}


class AuthenticationFailed(FeaturelensError):
    """The provider refused the credentials; retrying cannot help."""


@dataclass(frozen=True)
class Verdict:
    """What to do about one failed attempt."""

    retryable: bool
    retry_after: float | None
    reason: str


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits U(0, min(cap, base * 2**n))."""

    max_attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 60.0
    max_retry_after_s: float = 60.0  #: a longer retry-after is not believed

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0).

        A ``retry_after`` is honoured up to ``max_retry_after_s``; beyond it (``1e9``, a
        date years ahead) the computed backoff is used, as the OpenAI SDK does, so a broken
        header cannot stall a run forever."""
        if retry_after is not None and 0.0 <= retry_after <= self.max_retry_after_s:
            return retry_after + random.uniform(0, 0.1 * max(retry_after, 0.1))
        return random.uniform(0, min(self.cap_s, self.base_s * (2 ** attempt)))


def _header(error: BaseException, name: str) -> str | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        return headers.get(name)
    except Exception:  # noqa: BLE001 - exotic header containers
        return None


def _seconds(value: float) -> float | None:
    """A wait that means something: finite and not negative (``-1``, ``nan``, ``inf``: none)."""
    return value if math.isfinite(value) and value >= 0 else None


def retry_after_seconds(error: BaseException) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) from the error's
    response; ``None`` when absent or unreadable (``soon``, ``-1``, ``nan``)."""
    value = _header(error, "retry-after-ms")
    if value:
        try:
            seconds = _seconds(float(value) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    value = _header(error, "retry-after")
    if not value:
        return None
    try:
        return _seconds(float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if parsed.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def http_status(error: BaseException) -> int | None:
    """The HTTP status an SDK error carries, ``None`` for transport errors."""
    return _status(error)


def _short(error: BaseException) -> str:
    text = redact(" ".join(str(error).split())) or type(error).__name__
    return f"{type(error).__name__}: {text[:300]}"


def classify(error: BaseException) -> Verdict:
    """Decide whether ``error`` (from any SDK or transport) deserves another attempt."""
    status = _status(error)
    if status in (401, 403):
        return Verdict(False, None, f"authentication failed (HTTP {status})")
    if status is not None:
        retryable = status in _RETRY_STATUS or status >= 500
        return Verdict(retryable, retry_after_seconds(error) if retryable else None,
                       f"HTTP {status}: {_short(error)}")
    names = " ".join(cls.__name__ for cls in type(error).__mro__)
    if isinstance(error, (TimeoutError, ConnectionError)) or "Timeout" in names or "Connect" in names:
        return Verdict(True, None, _short(error))
    return Verdict(False, None, _short(error))


def describe(error: Any) -> str:
    """A one-line reason for the failures table (never contains request headers)."""
    return classify(error).reason if isinstance(error, BaseException) else str(error)
