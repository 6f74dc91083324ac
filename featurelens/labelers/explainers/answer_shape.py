"""Is this text shaped like an answer at all? Garbage is refused before it is parsed.

A server under load, a broken proxy or a model that derails can return bytes that are
not an answer: NUL and other control characters, replacement characters from a bad
decode, runs of brackets, symbol soup; and text that is well formed but is a stand-in
for an answer: ``null``/``undefined``/``[object Object]`` from a broken client, filler
(``Lorem ipsum``), a JSON value (an error object), an HTML page (a proxy's 502) or a bare
HTTP status phrase (``Bad Gateway``). The lenient parser would happily keep the last
line of such text as an "explanation", so these checks come first and turn it into a
:class:`ParseError` (a counted failure showing the answer's start), never a label.
"""

from __future__ import annotations

import json
import re
import unicodedata

from featurelens.core.host.protocols import ParseError

#: Control characters allowed in an answer (line structure only).
_ALLOWED_CONTROL = {"\t", "\n", "\r"}
#: Three or more of the same bracket in a row: markup or noise, not prose.
_BRACKET_RUN = re.compile(r"([\[\]{}()<>])\1\1")
#: Fewer letters and digits than this share of the visible characters: not a phrase.
MIN_ALNUM_SHARE = 0.5


def _bad_character(text: str) -> str | None:
    for char in text:
        if char in _ALLOWED_CONTROL:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co", "Cn") or char == "\ufffd":
            return f"U+{ord(char):04X}"
    return None


#: Whole answers that stand for "no value" in some language or client, not a phrase.
_PLACEHOLDERS = frozenset({"null", "none", "nil", "undefined", "nan", "[object object]",
                           "object object", "[object]", "n/a"})
#: Whole answers that are a server's error, not a model's; one-word labels like "error"
#: stay possible.
_HTTP_PHRASES = frozenset({
    "bad gateway", "gateway timeout", "gateway time-out", "service unavailable",
    "service temporarily unavailable", "internal server error", "too many requests",
    "bad request", "request timeout", "upstream connect error", "upstream request timeout"})
#: Phrases that are an HTTP error only after a status code ("404 not found").
_AFTER_STATUS = frozenset({"", "not found", "forbidden", "unauthorized", "error", "server error",
                           "method not allowed", "payload too large", "conflict", "ok"})
_STATUS = re.compile(r"^(?:http/\d(?:\.\d)?\s+)?[1-5]\d\d\b[\s:.-]*")
_FILLER = re.compile(r"lorem\s+ipsum|dolor\s+sit\s+amet|\[object\s+\w+\]", re.IGNORECASE)
_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)\b[^<>]*>")
_DOCUMENT = re.compile(r"<(?:!doctype|html|head|body)\b|</(?:html|head|body)>", re.IGNORECASE)


def _stand_in(text: str) -> str | None:
    """Why ``text`` is a stand-in for an answer rather than one, or ``None``."""
    bare = " ".join(text.split()).strip(" \"'`.;,!").casefold()
    if bare in _PLACEHOLDERS:
        return f"it is {bare!r}, a placeholder for no value"
    filler = _FILLER.search(text)
    if filler:
        return f"it is filler or a broken client's output ({filler.group(0)!r})"
    rest = _STATUS.sub("", bare).strip(" .")
    if rest in _HTTP_PHRASES or (rest != bare and rest in _AFTER_STATUS):
        return f"it is an HTTP error ({text.strip()[:40]!r}), not a model's answer"
    if _DOCUMENT.search(text) and len({t.lower() for t in _TAG.findall(text)}) >= 2:
        return "it is an HTML page (a proxy's or server's, not a model's answer)"
    stripped = text.strip()
    if stripped[:1] in "{[" or bare in ("[]", "{}"):
        try:
            value = json.loads(stripped)
        except ValueError:
            return None
        if isinstance(value, (dict, list)):
            return "it is a JSON value (an error object or data), not a phrase"
    return None


def check_answer(text: str) -> None:
    """Refuse a whole raw answer that contains characters no answer has, or that stands in
    for an answer (placeholder, filler, JSON value, HTML page, HTTP error)."""
    bad = _bad_character(text)
    if bad is not None:
        raise ParseError(f"the answer is not text in the asked format (it contains the control "
                         f"or invalid character {bad})")
    why = _stand_in(text)
    if why is not None:
        raise ParseError(f"the answer is not an explanation ({why})")


def check_phrase(phrase: str) -> None:
    """Refuse an extracted explanation that is not a phrase: bracket runs, symbol soup,
    or no word of two letters."""
    if _BRACKET_RUN.search(phrase):
        raise ParseError("the answer is not a phrase (it has runs of brackets)")
    visible = [c for c in phrase if not c.isspace()]
    alnum = sum(c.isalnum() for c in visible)
    if visible and alnum / len(visible) < MIN_ALNUM_SHARE:
        raise ParseError(f"the answer is not a phrase (only {alnum} of its {len(visible)} "
                         "characters are letters or digits)")
    if not re.search(r"[^\W\d_]{2,}", _TAG.sub(" ", phrase)):
        raise ParseError("the answer is not a phrase (it has no word outside markup tags)")
    why = _stand_in(phrase)
    if why is not None:
        raise ParseError(f"the answer is not an explanation ({why})")
