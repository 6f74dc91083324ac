"""A noisy judge for detection and fuzzing: knows each window's true label, errs at a set rate.

Choosing how few windows a classification score may use needs judges whose quality is
known and varies from explanation to explanation, as :mod:`featurelens.testing.oracle`
gives simulation. This judge reads the explanation in a detection or fuzzing prompt,
looks up which feature and *quality* ``q`` (0-1) it was registered with, finds each
example's true label among the windows that scorer builds for that feature, and answers
it rightly with probability ``0.5 + 0.5 * q`` (a coin flip at ``q = 0``, always right at
``q = 1``). The draw is seeded by the explanation and the window text, so every run,
round split or prompt grouping gets the same answer for the same window.

Used by ``benchmarks/cost_classifiers.py`` and the adaptive-scoring tests; not a product
provider.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Iterable

from featurelens.core.host.protocols import FeatureRecord, LLMRequest, LLMResponse
from featurelens.testing.oracle import Planted

_EXAMPLE = re.compile(r"<example (\d+)>(.*?)</example \1>", re.S)
_EXPLANATION = re.compile(r"Feature explanation: (.*)")


class NoisyJudge:
    """An :class:`~featurelens.core.host.protocols.LLMProvider` answering 0/1 lists for classifier scorers."""

    name = "judge"
    key_env = None
    capabilities: frozenset[str] = frozenset()

    def __init__(self, records: Iterable[FeatureRecord], explanations: dict[str, Planted],
                 scorers: Iterable[object], model: str = "noisy"):
        """``scorers``: the detection/fuzzing scorers whose windows the judge must recognise."""
        self.model = model
        self.explanations = dict(explanations)
        self.labels: dict[tuple[str, int, str], int] = {}
        scorers = list(scorers)
        for record in records:
            for scorer in scorers:
                items, _ = scorer.items(record)  # type: ignore[attr-defined]
                for text, label, _window in items:
                    self.labels[(record.dictionary_id, record.feature, text)] = int(label)
        self.calls = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return self.answer(request)

    def answer(self, request: LLMRequest) -> LLMResponse:
        """A list of 0/1, one per example in the request's last turn."""
        self.calls += 1
        last = request.messages[-1]["content"] if request.messages else ""
        found = _EXPLANATION.findall(last)
        explanation = found[-1].strip() if found else ""
        planted = self.explanations.get(explanation)
        answers = [self._one(planted, explanation, body) for _, body in _EXAMPLE.findall(last)]
        return LLMResponse(text="[" + ",".join(map(str, answers)) + "]")

    def _one(self, planted: Planted | None, explanation: str, text: str) -> int:
        seed = hashlib.sha256(f"{explanation}\0{text}".encode()).digest()
        rng = random.Random(int.from_bytes(seed[:8], "big"))
        if planted is None:
            return rng.randint(0, 1)
        truth = self.labels.get((planted.dictionary_id, planted.feature, text))
        if truth is None:  # a window the judge was not given: it cannot know
            return rng.randint(0, 1)
        right = rng.random() < 0.5 + 0.5 * max(0.0, min(1.0, planted.quality))
        return truth if right else 1 - truth
