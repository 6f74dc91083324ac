"""Which explainer wrote a label, shown beside it wherever a label appears.

A label from the token-lookup explainer (no LLM) and one from an LLM read alike, but
they are different kinds of claim: the badge names the explainer, and says "no LLM"
for work recorded under the offline provider, so a reader never takes a token count
for a model's reading (or the reverse). The ``badge`` macro in templates/macros.html
draws it (escaped like every other value).
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.llm.offline import OFFLINE_LLM


@dataclass(frozen=True)
class Badge:
    explainer: str
    by: str  #: "no LLM", the LLM spec, or "" when unknown
    kind: str  #: "offline" or "llm" (a CSS class)

    @property
    def text(self) -> str:
        return self.explainer + (f" · {self.by}" if self.by else "")


def explainer_badge(explainer: str | None, llm: str | None) -> Badge | None:
    """What the badge beside a label says; None without an explainer."""
    if not explainer:
        return None
    offline = llm == OFFLINE_LLM
    return Badge(explainer, "no LLM" if offline else (llm or ""), "offline" if offline else "llm")
