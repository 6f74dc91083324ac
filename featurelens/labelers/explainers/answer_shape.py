"""Is this text shaped like an answer at all? Garbage is refused before it is parsed.

A server under load, a broken proxy or a model that derails can return bytes that are
not an answer: NUL and other control characters, replacement characters from a bad
decode, runs of brackets, symbol soup. The lenient parser would happily keep the last
line of such text as an "explanation", so these checks come first and turn it into a
:class:`ParseError` (a counted failure showing the answer's start), never a label.
"""

from __future__ import annotations

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


def check_answer(text: str) -> None:
    """Refuse a whole raw answer that contains characters no answer has."""
    bad = _bad_character(text)
    if bad is not None:
        raise ParseError(f"the answer is not text in the asked format (it contains the control "
                         f"or invalid character {bad})")


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
    if not re.search(r"[^\W\d_]{2,}", phrase):
        raise ParseError("the answer is not a phrase (it has no word)")
