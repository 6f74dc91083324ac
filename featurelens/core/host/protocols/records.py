"""The records explainers and scorers are handed: a feature's stored windows and statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    """A context window with the feature's activation at every token."""

    tokens: list[str]
    activations: list[float]
    kind: str  #: top, quantile or random
    quantile: int | None = None

    @property
    def max_activation(self) -> float:
        return max(self.activations, default=0.0)


@dataclass
class FeatureRecord:
    """Everything stored about one feature that an explainer or scorer may use."""

    dictionary_id: str
    feature: int
    max_activation: float
    density: float
    examples: list[Example]
    top_logits: list[str] = field(default_factory=list)
    bottom_logits: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Example]:
        return [e for e in self.examples if e.kind == kind]
