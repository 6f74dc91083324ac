"""Secrets never leave the process: one function that blanks them out of any text.

A provider (or a proxy in front of it) may echo the request's key in an error body;
that text would otherwise reach ``llm_calls.error``, ``failures.reason``, the terminal,
logs, Parquet exports and the browser. :func:`redact` removes

- the value of every configured key: ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY`` and any
  environment variable whose name ends in ``_API_KEY``, ``_TOKEN``, ``_SECRET`` or
  ``_PASSWORD`` (values of 8 characters or more), and
- whatever follows ``Authorization``, ``Bearer``, ``x-api-key`` or ``api-key``, in
  header, JSON or ``key=value`` form, and anything shaped like an OpenAI/Anthropic key
  (``sk-...``), configured or not.

It is applied where texts are stored (:func:`redact_columns` from ``Store.insert``),
printed (the CLI's error line, plugin failures), logged (:func:`install_log_redaction`)
and raised (the retry policy's reasons).
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[REDACTED]"
#: Environment variables whose values are secrets wherever they appear.
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
_SECRET_NAME = re.compile(r"(?:_API_KEY|_TOKEN|_SECRET|_PASSWORD)$")
_MIN_SECRET = 8
#: Stored text columns that can carry provider or transport text.
REDACTED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "llm_calls": ("error",),
    "failures": ("reason", "answer"),
}

_PATTERNS = [
    # Authorization: Bearer xyz / "authorization": "Bearer xyz" / x-api-key=xyz / api-key: xyz
    re.compile(r"""(?ix)
        (?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bapi[-_]key|\bapikey)
        (?P<sep>["']?\s*[:=]\s*["']?)
        (?:(?:bearer|basic|token)\s+)?
        (?P<value>[^\s"',;&}\]]+)"""),
    re.compile(r"(?i)(?P<name>\bbearer)(?P<sep>\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})"),
    re.compile(r"(?P<name>)(?P<sep>)(?P<value>\bsk-(?:ant-)?[A-Za-z0-9_-]{12,})"),
]


def configured_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the key variables set now, and the forms a server may echo them in
    (the value without surrounding blanks, as the providers send it; base64 and URL
    encodings), longest first (so overlapping keys mask whole)."""
    env = os.environ if environ is None else environ
    values = {value for name, value in env.items()
              if (name in KEY_VARIABLES or _SECRET_NAME.search(name)) and value and len(value.strip()) >= _MIN_SECRET}
    forms = {form for value in values for form in _echoed_forms(value)}
    return sorted(forms, key=len, reverse=True)


@functools.lru_cache(maxsize=64)
def _echoed_forms(value: str) -> tuple[str, ...]:
    """``value`` as a server could echo it: stripped, URL-quoted (path and form style),
    hex (lower and upper case), and base64 (standard and URL-safe) at each of the three
    byte alignments it can have inside a longer encoded text (``user:KEY`` in a Basic
    header), keeping only the characters the value alone decides."""
    plain = value.strip()
    data = plain.encode("utf-8")
    forms = {value, plain, urllib.parse.quote(plain, safe=""), urllib.parse.quote(plain),
             urllib.parse.quote_plus(plain), data.hex(), data.hex().upper()}
    for pad in range(3):
        total = pad + len(data)
        first = -(-8 * pad // 6)  # the first character whose 6 bits are all the value's
        last = (8 * total) // 6  # one past the last such character
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            middle = encode(b"\0" * pad + data).decode("ascii")[first:last]
            if len(middle) >= _MIN_SECRET:
                forms.add(middle)
    return tuple(f for f in forms if len(f) >= _MIN_SECRET)


def redact_values(text: Any, secrets: Iterable[str]) -> Any:
    """``text`` with only the given secret values masked (no patterns): for a model's
    answer, where words like "Bearer tokens" are content, not credentials."""
    if not isinstance(text, str) or not text:
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: Any, secrets: Iterable[str] | None = None) -> Any:
    """``text`` with every secret replaced by ``[REDACTED]``; non-strings pass unchanged."""
    if not isinstance(text, str) or not text:
        return text
    text = redact_values(text, configured_secrets() if secrets is None else secrets)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m['name']}{m['sep']}{MASK}" if m["value"] != MASK else m[0], text)
    return text


def redact_columns(table: str, arrow: Any) -> Any:
    """An Arrow table with the secret-bearing text columns of ``table`` redacted."""
    columns = [c for c in REDACTED_COLUMNS.get(table, ()) if c in arrow.column_names]
    if not columns:
        return arrow
    import pyarrow as pa

    secrets = configured_secrets()
    for column in columns:
        index = arrow.column_names.index(column)
        values = [redact(v, secrets) for v in arrow.column(index).to_pylist()]
        arrow = arrow.set_column(index, column, pa.array(values, type=arrow.schema.field(column).type))
    return arrow


def sql_replace_clause(con: Any, table: str, columns: Iterable[str]) -> str:
    """`` REPLACE (featurelens_redact(c) AS c, ...)`` for ``SELECT *`` over ``table`` (empty
    when it has no secret-bearing column), registering the DuckDB function on first use;
    exports use it so even a store written before redaction existed exports clean text."""
    wanted = [c for c in REDACTED_COLUMNS.get(table, ()) if c in set(columns)]
    if not wanted:
        return ""
    try:
        con.create_function("featurelens_redact", lambda text: redact(text), ["VARCHAR"], "VARCHAR",
                            null_handling="special", side_effects=False)
    except Exception as error:  # noqa: BLE001 - already registered on this connection
        if "already" not in str(error):
            raise
    return " REPLACE (" + ", ".join(f"featurelens_redact({c}) AS {c}" for c in wanted) + ")"


_INSTALLED = False


def install_log_redaction() -> None:
    """Redact every log record from now on, whoever logs it and whichever handler prints
    it (SDKs log requests at debug level): the record factory cleans each message as the
    record is made. Idempotent."""
    global _INSTALLED
    if _INSTALLED:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's own problem
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _INSTALLED = True
