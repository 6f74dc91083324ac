"""Tokenising one long document a bounded piece at a time.

Tokenisers hold a whole call's text, tokens and offsets in memory at once, several
times over: one 50 MB single-line file took 7.7 GB and over two minutes although only
128 tokens were wanted. Cutting a long text into pieces of about :data:`CHUNK_CHARS`
characters, just before a space that follows a non-space (where byte-level BPE
pre-tokenisers split anyway, so the tokens are the same as for the whole text), bounds
memory by the piece, and lets packing stop as soon as it has the windows it needs.
"""

from __future__ import annotations

from typing import Any, Iterator

#: Characters tokenised per call; short documents (nearly all) are tokenised whole.
CHUNK_CHARS = 1 << 16
#: How far back from the limit a cut may look for a space before cutting mid-word.
_LOOKBACK = 4096


def cut_points(text: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[tuple[int, int]]:
    """``(start, end)`` spans covering ``text``, each at most ``chunk_chars`` long, cut
    before a space that follows a non-space where one is near the limit."""
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + chunk_chars)
        if end < n:
            floor = max(start + 1, end - _LOOKBACK)
            cut = text.rfind(" ", floor, end)
            while cut > floor and text[cut - 1].isspace():
                cut = text.rfind(" ", floor, cut - 1)
            if cut > floor:
                end = cut
        yield start, end
        start = end


def tokenize_in_chunks(text: str, tokenizer: Any, chunk_chars: int = CHUNK_CHARS) -> Iterator[list[int]]:
    """Token ids of ``text``, piece by piece (no special tokens added)."""
    if len(text) <= chunk_chars:
        yield tokenizer(text, add_special_tokens=False)["input_ids"]
        return
    for start, end in cut_points(text, chunk_chars):
        yield tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
