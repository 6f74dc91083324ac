"""How a token label is written and read back: ``" self" after "(" — 83% of top activation mass``.

The token-lookup explainer writes labels in this form and the token-check scorer
reads them, so both live here. Tokens are shown neutralised (a newline as ``↵``, see
:mod:`featurelens.llm.window_text`) inside JSON string quotes, so any token, a quote included, reads
back exactly. Tokens are compared by :func:`token_key`: case and surrounding
whitespace aside, because ``" Self"``, ``"self"`` and ``" self"`` are one word to a
reader and usually one feature to a model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from featurelens.llm.window_text import neutralise

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ELEMENT = re.compile(rf"({_QUOTED})(?:\s+after\s+({_QUOTED}))?")
_PLAIN = re.compile(r'"[^"\\\x00-\x1f]*"')
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

#: Words that say nothing about which tokens fire; left out when a label has no quotes.
STOPWORDS = frozenset("""
a an the and or of in on at to for from by with as is are be this that these those it its
feature features token tokens word words fires fire firing activates activation activations
responds response mainly mostly often usually especially such like e g eg i ie etc before after
following preceding when which where what text context contexts mention mentions references
related use usage used common name names part parts end start beginning
""".split())


@lru_cache(maxsize=1 << 16)
def token_key(token: str) -> str:
    """The form tokens are grouped and matched by: neutralised, stripped, case-folded
    (whitespace-only tokens keep their neutralised form, so ``↵`` stays itself)."""
    shown = neutralise(token)
    return shown.strip().casefold() or shown


#: :func:`token_key`, memoised: a vocabulary's tokens recur in every window of every feature,
#: and per-feature labelers and scorers key thousands of tokens a feature.
cached_token_key = lru_cache(maxsize=1 << 18)(token_key)


#: Windows whose keys :func:`window_keys` keeps: two tuples of pointers to vocabulary strings,
#: about 1.2 KB for a window of 64 tokens, so about 20 MB when full.
WINDOWS_KEPT = 1 << 14


def window_keys(tokens: Sequence[str]) -> tuple[str, ...]:
    """:func:`token_key` of each token of a window, memoised by the whole window.

    Scorers test every feature on windows cut from the same corpus sequences, so one
    window comes back for feature after feature (four in five of a chunk's test windows
    repeat on a real extraction): its keys are looked up once while it stays among the
    :data:`WINDOWS_KEPT` most recent, instead of one cache lookup a token."""
    return _window_keys(tuple(tokens))


@lru_cache(maxsize=WINDOWS_KEPT)
def _window_keys(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(map(cached_token_key, tokens))


@dataclass(frozen=True)
class Element:
    """One thing a label names: a token, optionally only right after another token."""

    token: str
    previous: str | None = None

    def render(self) -> str:
        text = _quote(self.token)
        return f"{text} after {_quote(self.previous)}" if self.previous is not None else text

    @property
    def keys(self) -> tuple[str, str | None]:
        return token_key(self.token), (token_key(self.previous) if self.previous is not None else None)


def _quote(token: str) -> str:
    return json.dumps(neutralise(token), ensure_ascii=False)


def render_label(elements: list[Element], coverage: float, precision: float | None) -> str:
    """The label text: the elements, then the evidence for them."""
    shown = [e.render() for e in elements]
    names = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    evidence = f"{round(100 * coverage)}% of top activation mass"
    if precision is not None:
        evidence += f", fires on {round(100 * precision)}% of its occurrences"
    return f"{names} — {evidence}"


def parse_elements(label: str) -> list[Element]:
    """The quoted tokens (and ``after`` contexts) a label names; empty when it quotes none."""
    elements = []
    for match in _ELEMENT.finditer(label):
        try:
            token = _unquote(match.group(1))
            previous = _unquote(match.group(2)) if match.group(2) else None
        except json.JSONDecodeError:
            continue
        if token:
            elements.append(Element(token, previous))
    return elements


def _unquote(quoted: str) -> str:
    """The string a JSON string literal holds: read by slicing when it has no escape or
    control character (how token labels quote nearly every token), else by the JSON
    decoder, which also refuses what JSON refuses."""
    return quoted[1:-1] if _PLAIN.fullmatch(quoted) else json.loads(quoted)


def label_keywords(label: str) -> set[str]:
    """Content words of a label that quotes no token (an LLM's prose), as token keys."""
    return {w for w in (m.group(0).casefold() for m in _WORD.finditer(label))
            if w not in STOPWORDS and (len(w) > 1 or not w.isalpha())}
