"""The ``highlighted`` explainer: delphi style, firing tokens wrapped in ``<<`` ``>>``.

Cheaper than token tables (the text reads as text); ``activation_list=True`` adds each
marked token's 0-10 strength after its window, as delphi's option does.
"""

from __future__ import annotations

from featurelens.core.host.protocols import Example
from featurelens.labelers.explainers import prompts
from featurelens.labelers.explainers.token_activations import PromptedExplainer
from featurelens.llm.window_text import (
    activating_mask,
    highlight,
    neutralise,
    normalise,
)


class HighlightedExplainer(PromptedExplainer):
    """Windows as text with the firing tokens marked."""

    name = "highlighted"
    system_text = prompts.HIGHLIGHTED_SYSTEM
    few_shot_answer = prompts.FEW_SHOT_HIGHLIGHTED_ANSWER

    def __init__(self, *, activation_list: bool = False, **options: object):
        super().__init__(**options)  # type: ignore[arg-type]
        self.activation_list = bool(activation_list)

    @property
    def few_shot_user(self) -> str:  # type: ignore[override]
        if self.activation_list:
            return prompts.FEW_SHOT_HIGHLIGHTED + prompts.FEW_SHOT_HIGHLIGHTED_STRENGTHS
        return prompts.FEW_SHOT_HIGHLIGHTED

    def options(self) -> dict[str, object]:
        return {**super().options(), "activation_list": self.activation_list}

    def render(self, examples: list[Example], scale: float) -> str:
        body, strengths = [], []
        for i, example in enumerate(examples, 1):
            mask = activating_mask(example)
            body.append(f"<example {i}>{highlight(example.tokens, mask)}</example {i}>")
            if self.activation_list:
                marked = ", ".join(
                    f"{neutralise(t).strip() or neutralise(t)}:{normalise(a, scale)}"
                    for t, a, on in zip(example.tokens, example.activations, mask) if on
                )
                strengths.append(f"Strengths for example {i}: {marked}")
        block = "<examples>\n" + "\n".join(body) + "\n</examples>"
        if strengths:
            block += "\n" + "\n".join(strengths)
        return block
