"""What ``featurelens run`` says when there is nothing to label or nothing to rank.

A dictionary whose features never fired on the extracted tokens, or whose labels all got
undefined offline scores (every compared window activates, as on a corpus of one repeated
token), still finishes; the summary then says which of the two happened and what to change,
instead of "no score yet" and a suggestion to label more features that cannot be labeled.
"""

from __future__ import annotations

from typing import Any


def nothing_fired(extract_tokens: int) -> str:
    return (f"No feature fired on the {extract_tokens:,} extracted tokens, so there is nothing to label; "
            "rerun with more --extract-tokens, or train longer (--train-tokens) if the dictionary is dead.")


def no_ranking(summary: Any, extract_tokens: int) -> str:
    """The summary's line when no feature has a defined score (module docstring)."""
    if summary.n_alive == 0:
        return nothing_fired(extract_tokens)
    if getattr(summary, "n_undefined", 0):
        return (f"No label has a defined score: all {summary.n_undefined} scores are undefined, because the "
                "scorers found no window that does not activate the feature to compare with (a corpus of "
                "one repeated token does this); give --corpus more varied text.")
    return "No feature has a score yet."
