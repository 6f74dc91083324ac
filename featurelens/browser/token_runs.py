"""Merge runs of unlit tokens in an example window into one piece of text.

A feature fires on a few tokens of each 64-token window; wrapping every other token in
its own ``<span>`` made up most of a page's bytes (about 84 KB of a 100 KB exported
page). Unlit tokens carry no colour and no value to hover, so consecutive ones are
drawn as one plain ``.tok`` run: the same text, a fraction of the markup. Lit tokens
and special tokens keep their own element (colour, ``title`` and ``data-act``).
"""

from __future__ import annotations

from typing import Any


def merge_unlit(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tokens`` (as :func:`~featurelens.browser.render_feature.window_tokens` makes
    them) with each run of consecutive unlit, non-special tokens joined into one."""
    out: list[dict[str, Any]] = []
    for token in tokens:
        plain = token["rgb"] is None and not token["special"]
        if plain and out and out[-1]["rgb"] is None and not out[-1]["special"]:
            out[-1] = {**out[-1], "text": out[-1]["text"] + token["text"], "value": 0.0}
        else:
            out.append(token)
    return out
