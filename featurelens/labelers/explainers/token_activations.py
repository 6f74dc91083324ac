"""The ``token-activations`` explainer: OpenAI automated-interpretability style.

By default (``style="compact"``) each window is one line of text with the firing tokens
marked and their 0-10 strength shown once (:mod:`.compact_format`), under a short prompt
(:mod:`.compact_prompts`): about a third of the tokens of the table. ``style="table"``
keeps the original format, one token per line as ``token<TAB>activation`` with every
token's activation normalised to 0-10 by :func:`featurelens.llm.window_text.normalise`.
"""

from __future__ import annotations

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    Example,
    ExplainerBase,
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ParseError,
)
from featurelens.labelers.explainers import compact_prompts, prompts
from featurelens.labelers.explainers.compact_format import compact_block
from featurelens.labelers.explainers.parsing import parse_explanation
from featurelens.llm.example_selection import EXPLAIN_TOP, for_explainer
from featurelens.llm.window_text import (
    crop,
    feature_scale,
    neutralise,
    normalise_all,
    token_table,
)


class PromptedExplainer(ExplainerBase):
    """Options every built-in prompted explainer shares, and the request/parse scaffolding
    (the optional members of the explainer contract set from its options)."""

    name = "explainer"
    #: one chat request per feature: API models get several features a request by default
    groups_features = True
    system_text = ""
    few_shot_user = ""
    few_shot_answer = ""

    def __init__(self, n_examples: int = EXPLAIN_TOP, n_quantile: int = 0, window: int = 32,
                 logits: bool = False, reasoning: bool = False, max_tokens: int | None = None):
        if int(n_examples) < 1 or int(window) < 4:
            raise FeaturelensError(
                f"Explainer option n_examples={n_examples} / window={window} is too small; "
                "use n_examples >= 1 and window >= 4.")
        self.n_examples = int(n_examples)
        self.n_quantile = int(n_quantile)
        self.window = int(window)
        self.logits = bool(logits)
        self.reads_logit_effects = self.logits  # the explain job fills lazy effects only then
        self.reasoning = bool(reasoning)
        # One short phrase fits in 32 tokens; the cap stops a small model that rambles.
        self.max_tokens = int(max_tokens or (400 if reasoning else 32))

    def example_width(self) -> int:
        """Every window a prompt shows is cut to ``window`` tokens around its peak, so the
        rest is never read (a subclass that shows more declares its own width)."""
        return self.window

    def options(self) -> dict[str, object]:
        """What changes the prompt; stored with the explanation to reproduce it."""
        return {"n_examples": self.n_examples, "n_quantile": self.n_quantile,
                "window": self.window, "logits": self.logits, "reasoning": self.reasoning}

    def example_kinds(self) -> dict[str, int | None]:
        """The stored windows :meth:`requests` reads, so the engine loads only those."""
        kinds: dict[str, int | None] = {"top": self.n_examples}
        if self.n_quantile:
            kinds["quantile"] = None  # all: they are spread across bins
        return kinds

    def system_message(self) -> str:
        """The instructions for this explainer's options."""
        return prompts.system_prompt(self.system_text, reasoning=self.reasoning, logits=self.logits,
                                     activation_list=getattr(self, "activation_list", False))

    def feature_turn(self, examples_block: str, logits_block: str | None) -> str:
        """The user turn holding one feature's evidence."""
        return prompts.feature_turn(examples_block, logits_block)

    few_shot_logits = prompts.FEW_SHOT_LOGITS

    def prefix(self) -> list[dict[str, str]]:
        """System and few-shot turns: identical for every feature, so cacheable."""
        system = self.system_message()
        user = self.feature_turn(self.few_shot_user, self.few_shot_logits if self.logits else None)
        answer = self.few_shot_answer
        if self.reasoning:
            answer = "The strongest tokens share one property.\n" + answer
        return [{"role": "system", "content": system}, {"role": "user", "content": user},
                {"role": "assistant", "content": answer}]

    def render(self, examples: list[Example], scale: float) -> str:
        raise NotImplementedError

    def requests(self, record: FeatureRecord) -> list[LLMRequest]:
        examples = [crop(e, self.window) for e in
                    for_explainer(record, self.n_examples, self.n_quantile)]
        if not examples:  # no request; parse() then records why (the job stream goes on)
            return []
        block = self.render(examples, feature_scale(record))
        logits_block = _logits_block(record) if self.logits else None
        messages = self.prefix() + [{"role": "user",
                                     "content": self.feature_turn(block, logits_block)}]
        return [LLMRequest(messages=messages, max_tokens=self.max_tokens, temperature=0.0,
                           shared_prefix=3, purpose="explain", stop_at_newline=not self.reasoning)]

    def parse(self, record: FeatureRecord, responses: list[LLMResponse]) -> str:
        if not responses:
            raise ParseError(f"feature {record.feature} has no activating windows to explain")
        return parse_explanation(responses[0].text, reasoning=self.reasoning,
                                 examples=(self.few_shot_answer,))


def _logits_block(record: FeatureRecord) -> str:
    promoted = ", ".join(neutralise(t) for t in record.top_logits[:10]) or "‹none›"
    suppressed = ", ".join(neutralise(t) for t in record.bottom_logits[:10]) or "‹none›"
    return f"Promoted outputs: {promoted}\nSuppressed outputs: {suppressed}"


#: ``style`` values of the token-activations explainer, and the window each shows by default.
STYLES = {"compact": 16, "table": 32}


class TokenActivationsExplainer(PromptedExplainer):
    """Windows as compact marked lines (default) or ``token<TAB>activation`` tables."""

    name = "token-activations"
    system_text = prompts.TOKEN_ACTIVATIONS_SYSTEM
    few_shot_user = prompts.FEW_SHOT_TOKEN_TABLE
    few_shot_answer = prompts.FEW_SHOT_TOKEN_ANSWER

    def __init__(self, *, style: str = "compact", window: int | None = None, **options: object):
        if style not in STYLES:
            raise FeaturelensError(f"Explainer option style={style!r} is not one of "
                                   f"{', '.join(STYLES)}; use -o style=compact or -o style=table.")
        super().__init__(window=STYLES[style] if window is None else window, **options)  # type: ignore[arg-type]
        self.style = style
        if style == "compact":
            self.few_shot_user = compact_prompts.FEW_SHOT_COMPACT
            self.few_shot_answer = compact_prompts.FEW_SHOT_COMPACT_ANSWER
            self.few_shot_logits = compact_prompts.FEW_SHOT_COMPACT_LOGITS

    def options(self) -> dict[str, object]:
        return {**super().options(), "style": self.style}

    def system_message(self) -> str:
        if self.style == "compact":
            return compact_prompts.compact_system_prompt(reasoning=self.reasoning, logits=self.logits)
        return super().system_message()

    def feature_turn(self, examples_block: str, logits_block: str | None) -> str:
        if self.style == "compact":
            return compact_prompts.compact_turn(examples_block, logits_block)
        return super().feature_turn(examples_block, logits_block)

    def render(self, examples: list[Example], scale: float) -> str:
        if self.style == "compact":
            return compact_block(examples, scale)
        body = [
            f"<example {i}>\n{token_table(e.tokens, normalise_all(e.activations, scale))}\n</example {i}>"
            for i, e in enumerate(examples, 1)
        ]
        return "<examples>\n" + "\n".join(body) + "\n</examples>"
