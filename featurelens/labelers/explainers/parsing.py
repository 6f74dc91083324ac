"""Turning an LLM's answer into a clean, bounded explanation, or refusing it.

Small models wander: they add reasoning, quotes, markdown, "This feature fires on...",
or nothing usable at all. An explanation is what follows the last ``Explanation:``
(or, without one, the last non-empty line when no reasoning was asked for), cut to its
first sentence, cleaned of decoration and cut at a word boundary to :data:`MAX_CHARS`. An empty or refusing
answer raises :class:`ParseError`, so the engine records a failure instead of an
empty label; so does garbage (:mod:`.answer_shape`): control characters, bracket runs,
symbol soup.
"""

from __future__ import annotations

import re

from featurelens.core.host.protocols import ParseError
from featurelens.labelers.explainers.answer_shape import check_answer, check_phrase

#: Longest explanation kept (characters); longer answers are cut at a word boundary.
MAX_CHARS = 200

_MARKER = re.compile(r"explanation\s*[:：-]\s*", re.IGNORECASE)
_LEAD = re.compile(
    r"^(?:(?:this|the|a)\s+(?:feature|neuron|latent)\s+(?:that\s+)?(?:mainly\s+|mostly\s+|primarily\s+)?"
    r"(?:fires|activates|responds|is active|detects|represents|tracks|is)\s*(?:on|to|for|when|in)?\s*)",
    re.IGNORECASE,
)
_REFUSAL = re.compile(r"^(?:i\s+(?:can(?:no|')t|am unable|'m unable)|unknown\b|n/?a\b|none\b|sorry|no explanation\b)",
                      re.IGNORECASE)
_DECORATION = "`*_ \t"
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’"}


def _unquote(text: str) -> str:
    """Drop decoration and one or more pairs of quotes wrapping the whole text."""
    text = text.strip(_DECORATION)
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip(_DECORATION)
    return text


def parse_explanation(text: str, *, reasoning: bool = False, examples: tuple[str, ...] = ()) -> str:
    """The explanation in ``text``; :class:`ParseError` if there is none worth storing.

    ``examples`` are the few-shot answers of the prompt: small models often copy one
    verbatim, which says nothing about this feature, so a copy is refused too.
    """
    if text:
        check_answer(text)
    explanation = _parse(text, reasoning)
    check_phrase(explanation)
    if any(_is_copy(explanation, clean(e.split(":", 1)[-1])) for e in examples):
        raise ParseError(f"the model copied the prompt's example answer ({explanation!r})")
    return explanation


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _is_copy(explanation: str, example: str, slack: int = 3) -> bool:
    """Every word of the example, and at most ``slack`` more: a copy with a flourish
    ("..., etc.") is still a copy, while a real answer sharing a few words is not."""
    said, shown = _words(explanation), _words(example)
    return bool(shown) and set(shown) <= set(said) and len(said) <= len(shown) + slack


def _parse(text: str, reasoning: bool) -> str:
    if not text or not text.strip():
        raise ParseError("the answer was empty")
    markers = list(_MARKER.finditer(text))
    if markers:
        candidate = text[markers[-1].end():].strip().splitlines()[0] if text[markers[-1].end():].strip() else ""
    elif reasoning:
        raise ParseError("the answer has no 'Explanation:' line after its reasoning")
    else:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        candidate = lines[-1] if lines else ""
    return clean(candidate)


#: A sentence ends at ". " before a capital letter, unless the dot closes an abbreviation.
_SENTENCE_END = re.compile(r"(\S+)\.\s+(?=[A-Z])")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "cf", "mr", "dr", "no"}


def first_sentence(text: str) -> str:
    """The first sentence: a label is one phrase, and small models run on after it
    ("the `def` statement. It returns the value of ..."), so what follows is dropped."""
    for match in _SENTENCE_END.finditer(text):
        if match.group(1).casefold().strip("(\"'`") not in _ABBREVIATIONS:
            return text[:match.start(1) + len(match.group(1))]
    return text


def clean(candidate: str) -> str:
    """Strip decoration and boilerplate, keep the first sentence, bound the length."""
    text = _unquote(first_sentence(" ".join(candidate.split())))
    text = _unquote(re.sub(r"^[-•>#]+\s*", "", text))
    text = _unquote(_LEAD.sub("", text).rstrip(" .;,"))
    if not text:
        raise ParseError("the answer's explanation was empty")
    if _REFUSAL.match(text):
        raise ParseError(f"the model gave no explanation ({text[:60]!r})")
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS].rsplit(" ", 1)[0]
        text = (cut or text[:MAX_CHARS]).rstrip(" ,;:")
    return text
