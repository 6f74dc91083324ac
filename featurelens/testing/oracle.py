"""A noisy oracle simulator: knows the true activations and blurs them by a set amount.

Checking that a cheaper way of scoring ranks features like the full one needs a
simulator whose quality is known and varies from explanation to explanation. The
oracle reads the target explanation in an all-at-once simulation prompt, looks up
which feature and *quality* ``q`` it was registered with, finds each test window among
that feature's stored examples and predicts ``q * truth + noise`` on the 0-10 scale
(``noise`` a Gaussian of the set standard deviation, seeded by the explanation and the
window so every run gives the same answers). It answers with prompt log-probabilities
that put the prediction's mass on the two nearest integers, so the scorer's expected
value recovers it exactly. ``q = 1`` and no noise is a perfect simulator; ``q = 0``
is an explanation that says nothing about the feature.

Used by ``benchmarks/cost.py`` and the adaptive-scoring tests; not a product provider.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from typing import Iterable

from featurelens.core.host.protocols import (
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    TokenLogprobs,
)
from featurelens.llm.window_text import neutralise
from featurelens.scorers.simulation_lines import PLACEHOLDERS


@dataclass(frozen=True)
class Planted:
    """What an explanation text stands for: a feature and how faithful it is (0-1)."""

    dictionary_id: str
    feature: int
    quality: float


class NoisyOracle:
    """An :class:`~featurelens.core.host.protocols.LLMProvider` for prompt-log-prob simulation."""

    name = "oracle"
    key_env = None
    capabilities = frozenset({"prompt_logprobs"})

    def __init__(self, records: Iterable[FeatureRecord], explanations: dict[str, Planted],
                 noise: float = 2.0, model: str = "noisy", salt: str = ""):
        self.model = model
        self.noise = float(noise)
        self.salt = salt  #: another salt is another, independent noise draw for the same prompts
        self.explanations = dict(explanations)
        #: (feature key, first two tokens) -> [(tokens, values, start)]: windows are found by
        #: their opening tokens, then checked whole (a test window is a cropped example)
        self.index: dict[tuple[str, int, str, str], list[tuple[list[str], list[float], int]]] = {}
        for record in records:
            peak = record.max_activation or 1.0
            key = (record.dictionary_id, record.feature)
            for example in record.examples:
                shown = [neutralise(t) for t in example.tokens]
                values = [10 * max(0.0, a) / peak for a in example.activations]
                for start in range(len(shown)):
                    pair = (shown[start], shown[start + 1] if start + 1 < len(shown) else "")
                    self.index.setdefault((*key, *pair), []).append((shown, values, start))
        self.calls = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return self.answer(request)

    def _truth(self, key: tuple[str, int], tokens: list[str]) -> list[float]:
        n = len(tokens)
        pair = (tokens[0], tokens[1] if n > 1 else "") if tokens else ("", "")
        for shown, values, start in self.index.get((*key, *pair), []):
            if n == 1 and start + 1 < len(shown) and pair[1] == "":
                continue
            if shown[start:start + n] == tokens:
                return values[start:start + n]
        return [0.0] * n

    def answer(self, request: LLMRequest) -> LLMResponse:
        """Prompt log-probabilities for every placeholder (``?``, ``unknown``) of an all-at-once prompt."""
        self.calls += 1
        prompt = request.prompt or ""
        found = re.findall(r"Feature explanation: (.*)", prompt)
        explanation = found[-1].strip() if found else ""
        planted = self.explanations.get(explanation)
        lines = prompt.split("\n")
        guesses: dict[int, dict[str, float]] = {}
        window: list[int] = []
        for index, line in enumerate(lines + [""]):
            token, tab, value = line.partition("\t")
            if tab and value in PLACEHOLDERS:
                window.append(index)
                continue
            if window:
                tops = self._window(planted, [lines[i].partition("\t")[0] for i in window], explanation)
                guesses.update(zip(window, tops, strict=True))
                window = []
        pieces: list[TokenLogprobs] = []
        for index, line in enumerate(lines):
            if index in guesses:
                token, _, placeholder = line.partition("\t")
                pieces += [TokenLogprobs(token, None), TokenLogprobs("\t", None),
                           TokenLogprobs(placeholder, -5.0, guesses[index])]
            else:
                pieces.append(TokenLogprobs(line, None))
            pieces.append(TokenLogprobs("\n", None))
        return LLMResponse(text="", input_tokens=len(prompt) // 4, prompt_logprobs=pieces[:-1])

    def _window(self, planted: Planted | None, tokens: list[str], explanation: str) -> list[dict[str, float]]:
        """The top log-probabilities at each token of one window."""
        truth = (self._truth((planted.dictionary_id, planted.feature), tokens) if planted
                 else [0.0] * len(tokens))
        quality = planted.quality if planted else 0.0
        seed = hashlib.sha256(("\0".join([explanation, *tokens]) + self.salt).encode()).digest()
        rng = random.Random(int.from_bytes(seed[:8], "big"))
        out: list[dict[str, float]] = []
        for value in truth:
            guess = min(10.0, max(0.0, quality * value + rng.gauss(0.0, self.noise)))
            low = math.floor(guess)
            frac = guess - low
            top = {str(low): math.log(max(1e-9, 1 - frac))}
            if frac > 0 and low < 10:
                top[str(low + 1)] = math.log(frac)
            out.append(top)
        return out
