"""The one-line answer rule of ``stop_at_newline`` for models run from their weights.

A one-line answer ends at the first line break after some text. A first line that is only
a label such as ``Explanation:`` is not the answer yet: small models often put the label on
a line of its own, and cutting there left an empty explanation. The label is kept and the
answer's first line joined to it. ``local`` (one at a time and in batches) and ``vllm`` use
this one rule so their answers agree.
"""

from __future__ import annotations

#: a label line: at most this many words before its colon
_LABEL_WORDS = 2


def _is_label(line: str) -> bool:
    line = line.strip()
    return line.endswith(":") and 0 < len(line[:-1].split()) <= _LABEL_WORDS


def first_line(text: str) -> tuple[str, bool]:
    """The answer's line and whether it is complete (a line break follows it)."""
    head, sep, tail = text.lstrip().partition("\n")
    if sep and _is_label(head):
        line, sep, _ = tail.lstrip().partition("\n")
        return (f"{head.strip()} {line}" if line.strip() else head.strip()), bool(sep and line.strip())
    return head, bool(sep)
