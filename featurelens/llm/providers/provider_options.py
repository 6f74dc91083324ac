"""Checks of provider options given on the command line (``--provider-option k=v``)."""

from __future__ import annotations

import math
import urllib.parse

from featurelens.core.errors import FeaturelensError


def whole_option(provider: str, name: str, value: int | str, least: int = 1, example: int = 8) -> int:
    """A provider option that must be a whole number >= ``least``; otherwise one sentence."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = least - 1
    if number < least:
        raise FeaturelensError(f"The {provider} provider's {name} option must be a whole number >= {least}, "
                               f"not {value!r}; pass e.g. --provider-option {name}={example}.")
    return number


#: The longest per-request timeout a provider accepts (a day): longer is a typo.
MAX_TIMEOUT_S = 86_400.0


def seconds_option(provider: str, name: str, value: float | int | str) -> float:
    """A provider option in seconds: a finite number above 0 and at most a day (``nan``,
    ``inf``, ``0`` or ``-1`` would make every request fail, or never time out)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if isinstance(value, bool) or not math.isfinite(number) or not 0 < number <= MAX_TIMEOUT_S:
        raise FeaturelensError(f"The {provider} provider's {name} option must be a number of seconds above 0 "
                               f"and at most {MAX_TIMEOUT_S:g}, not {value!r}; pass e.g. "
                               f"--provider-option {name}=120.")
    return number


def base_url_option(provider: str, value: str | None, source: str = "base_url") -> str | None:
    """A server address: ``http(s)://host[:port][/path]``, checked before any request is
    sent (an ``ftp://`` URL, a missing host, a bad port or a user name or password holding
    an unencoded ``/`` would otherwise be retried for seconds, then blamed on the server)."""
    if value is None:
        return None
    text = str(value).strip()
    hint = "pass e.g. --provider-option base_url=http://127.0.0.1:8000/v1"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise FeaturelensError(f"The {provider} provider's {source} {text[:80]!r} is not an http:// or "
                               f"https:// address; {hint}.")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
    except ValueError:
        raise FeaturelensError(f"The {provider} provider's {source} {text[:80]!r} has a port that is not a "
                               f"number from 1 to 65535; {hint}.") from None
    if "@" in text.split("://", 1)[-1] and "@" not in parts.netloc:
        raise FeaturelensError(f"The {provider} provider's {source} has an '@' after its host part: a user "
                               "name or password holding '/' must be written %2F; "
                               "or pass credentials through the key's environment variable instead.")
    if not parts.hostname:
        raise FeaturelensError(f"The {provider} provider's {source} {text[:80]!r} names no host; {hint}.")
    return text
