"""Which explainer wrote a label, shown beside it wherever a label appears.

A label from the token-lookup explainer (no LLM) and one from an LLM read alike, but
they are different kinds of claim: the badge names the explainer, and says "no LLM"
for work recorded under the offline provider, so a reader never takes a token count
for a model's reading (or the reverse).
"""

from __future__ import annotations

import html

from featurelens.llm.offline import OFFLINE_LLM


def explainer_badge(explainer: str | None, llm: str | None) -> str:
    """``<span class="explainer">token-lookup · no LLM</span>`` (escaped); empty without an explainer."""
    if not explainer:
        return ""
    by = "no LLM" if llm == OFFLINE_LLM else (llm or "")
    kind = "offline" if llm == OFFLINE_LLM else "llm"
    text = html.escape(explainer) + (f" · {html.escape(by)}" if by else "")
    return (f'<span class="explainer {kind}" data-explainer="{html.escape(explainer, quote=True)}" '
            f'title="written by the {html.escape(explainer, quote=True)} explainer">{text}</span>')
