"""The ``detection`` and ``fuzzing`` scorers: delphi's classification tests.

Both show the explanation and a shuffled mix of activating windows (spread across
activation quantiles) and non-activating ones, a few per prompt, and ask for a list
of 0/1 answers such as ``[1,0,0,1,1]``.

- detection: plain text; 1 means "the feature fires somewhere in this window".
- fuzzing: tokens marked ``<<tok>>``; on activating windows the tokens above 0.3 x the
  window's maximum, on non-activating windows as many tokens chosen at random; 1 means
  "the marks are on the right tokens".

A list of the wrong length, or no list, is a parse failure: its windows are left out
and counted, never scored as 0. The headline score is balanced accuracy; precision,
recall, F1 and the raw counts go in ``metrics``.

Windows go out in rounds by default (:mod:`featurelens.scorers.adaptive`: 20 windows a
round, stop once the balanced-accuracy interval is narrower than 0.35): the widest width at
which both scores stayed faithful to the full 100 windows in ``benchmarks/cost_classifiers.py``
with rounds of 10 and of 20 alike (at 0.4 fuzzing passed only with rounds of 20).
"""

from __future__ import annotations

import re
from typing import Any

from featurelens.core.batched import batched
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import (
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    ParseError,
    ScoreResult,
    ScorerBase,
)
from featurelens.llm.window_text import activating_mask, highlight, plain
from featurelens.scorers import prompts
from featurelens.scorers.adaptive import rounds_from_options
from featurelens.scorers.intervals import wilson
from featurelens.scorers.metrics import classification
from featurelens.scorers.scoring_windows import (
    Window,
    feature_rng,
    scorer_fallbacks,
    scorer_kinds,
    test_windows,
)

_LIST = re.compile(r"\[([^\[\]]*)\]")

#: Adaptive defaults: the cheapest setting that stayed faithful to the full 100-window score
#: for both scorers in ``benchmarks/cost_classifiers.py`` (BENCHMARKS.md, "Detection and fuzzing").
ADAPTIVE, CI_WIDTH, ROUND_WINDOWS = True, 0.35, 20


def parse_answers(text: str, expected: int) -> list[int]:
    """The last ``[...]`` list of 0/1 in ``text``; :class:`ParseError` unless it has ``expected`` items."""
    lists = _LIST.findall(text or "")
    if not lists:
        raise ParseError("the answer has no [..] list")
    items = [item.strip().strip("'\"") for item in lists[-1].split(",") if item.strip()]
    if len(items) != expected:
        raise ParseError(f"the answer lists {len(items)} values for {expected} examples")
    values = []
    for item in items:
        lowered = item.lower()
        if lowered in ("1", "true", "yes"):
            values.append(1)
        elif lowered in ("0", "false", "no"):
            values.append(0)
        else:
            raise ParseError(f"the answer holds {item!r}, not 0 or 1")
    return values


class ClassifierScorer(ScorerBase):
    """Shared machinery; subclasses say how a window is shown and what it is labelled."""

    name = "classifier"
    rules = ""

    def __init__(self, n_activating: int = 50, n_random: int = 50, window: int = 32,
                 per_prompt: int = 5, keep_values: bool = True, adaptive: bool | str = ADAPTIVE,
                 ci_width: float = CI_WIDTH, round_windows: int = ROUND_WINDOWS, confidence: float = 0.95):
        if n_activating < 1 or n_random < 1 or window < 2 or per_prompt < 1:
            raise FeaturelensError(
                f"The {self.name} scorer needs n_activating >= 1, n_random >= 1, window >= 2 and "
                "per_prompt >= 1; fix the scorer options.")
        self.n_activating, self.n_random = int(n_activating), int(n_random)
        self.window, self.per_prompt = int(window), int(per_prompt)
        self.keep_values = bool(keep_values)
        self.rounds = rounds_from_options(adaptive, ci_width, round_windows, confidence)

    def options(self) -> dict[str, Any]:
        """What changes the requests; stored with the score to reproduce it."""
        return {"n_activating": self.n_activating, "n_random": self.n_random,
                "window": self.window, "per_prompt": self.per_prompt, **self.rounds.options()}

    def example_kinds(self) -> dict[str, int | None]:
        """The stored windows this scorer reads, so the engine loads only those."""
        return scorer_kinds(self.n_activating, self.n_random)

    def example_fallbacks(self) -> dict[str, dict[str, int | None]]:
        """Top windows, read only for a feature without quantile windows."""
        return scorer_fallbacks(self.n_activating)

    def example_width(self) -> int:
        """It shows ``window`` tokens around each window's peak: the rest is never read."""
        return self.window

    def items(self, record: FeatureRecord) -> tuple[list[tuple[str, int, Window]], bool]:
        """``(shown text, true label, window)`` per test window, in prompt order."""
        raise NotImplementedError

    def shot(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def _prefix(self) -> list[dict[str, str]]:
        shot_items = self.shot()
        return [{"role": "system", "content": f"{self.rules} {prompts.CLASSIFIER_ANSWER}"},
                {"role": "user", "content": _turn(prompts.DETECTION_SHOT_EXPLANATION,
                                                  [text for text, _ in shot_items])},
                {"role": "assistant", "content": prompts.CLASSIFIER_SHOT_ANSWER}]

    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str] = frozenset()) -> list[LLMRequest]:
        """The first round's requests (every request when not adaptive)."""
        return self.rounds.first(self.all_requests(record, explanation, capabilities), self.per_prompt)

    def more_requests(self, record: FeatureRecord, explanation: str,
                      responses: list[LLMResponse | None],
                      capabilities: frozenset[str] = frozenset()) -> list[LLMRequest]:
        """The next round given the answers so far, or ``[]`` when the score is stable."""
        if not self.rounds.enabled:
            return []
        interval = self.score(record, explanation, responses).metrics.get("interval")
        return self.rounds.next(self.all_requests(record, explanation, capabilities), len(responses),
                                self.per_prompt, interval)

    def all_requests(self, record: FeatureRecord, explanation: str,
                     capabilities: frozenset[str] = frozenset()) -> list[LLMRequest]:
        """Every request up to the hard maximum of windows (the rounds, in order)."""
        items, _ = self.items(record)
        prefix = self._prefix()
        return [LLMRequest(messages=prefix + [{"role": "user", "content": _turn(
                    explanation, [text for text, _, _ in group])}],
                    max_tokens=4 * len(group) + 8, temperature=0.0, shared_prefix=3,
                    purpose=f"score:{self.name}")
                for group in batched(items, self.per_prompt)]

    def score(self, record: FeatureRecord, explanation: str,
              responses: list[LLMResponse | None], capabilities: frozenset[str] | None = None) -> ScoreResult:
        items, held_out = self.items(record)
        labels: list[int] = []
        answers: list[int] = []
        failures: list[str] = []
        failed_requests = 0
        kept: list[dict[str, Any]] = []
        for group, response in zip(batched(items, self.per_prompt), responses):
            if response is None:
                failed_requests += 1
                continue
            try:
                values = parse_answers(response.text, len(group))
            except ParseError as error:
                failures.append(str(error))
                continue
            for (text, label, window), answer in zip(group, values):
                labels.append(label)
                answers.append(answer)
                if self.keep_values:
                    kept.append({"text": text, "kind": window.example.kind,
                                 "quantile": window.example.quantile, "label": label, "answer": answer})
        metrics: dict[str, Any] = classification(labels, answers)
        metrics.update({"n_windows": min(len(items), self.per_prompt * len(responses)),
                        "n_windows_max": len(items), "n_windows_scored": len(labels),
                        "interval": balanced_interval(labels, answers, self.rounds.confidence),
                        "confidence": self.rounds.confidence,
                        "n_prompts": -(-len(items) // self.per_prompt),
                        "n_failed_requests": failed_requests, "held_out": held_out})
        balanced = metrics["balanced_accuracy"]
        status = "failed" if not labels else ("ok" if balanced is not None else "undefined")
        return ScoreResult(balanced if status == "ok" else None, status, metrics,
                           {"parse_failures": failures[:20], "windows": kept},
                           n_parse_failures=len(failures))


class DetectionScorer(ClassifierScorer):
    """Does the explanation tell windows where the feature fires from ones where it does not?"""

    name = "detection"
    rules = prompts.DETECTION_RULES

    def shot(self) -> list[tuple[str, int]]:
        return [(text, label) for _, text, label in prompts.DETECTION_SHOT]

    def items(self, record: FeatureRecord) -> tuple[list[tuple[str, int, Window]], bool]:
        windows, held_out = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        return [(plain(w.example.tokens), int(w.activating), w) for w in windows], held_out


class FuzzingScorer(ClassifierScorer):
    """Are the highlighted tokens the ones the explanation describes?"""

    name = "fuzzing"
    rules = prompts.FUZZING_RULES

    def shot(self) -> list[tuple[str, int]]:
        return list(prompts.FUZZING_SHOT)

    def items(self, record: FeatureRecord) -> tuple[list[tuple[str, int, Window]], bool]:
        windows, held_out = test_windows(record, self.n_activating, self.n_random, self.window, self.name)
        rng = feature_rng(record, self.name + ":marks")
        counts = [sum(activating_mask(w.example)) for w in windows if w.activating]
        counts = [c for c in counts if c] or [1]
        out = []
        for i, window in enumerate(windows):
            tokens = window.example.tokens
            if window.activating:
                mask = activating_mask(window.example)
            else:
                k = min(counts[i % len(counts)], len(tokens))
                chosen = set(rng.sample(range(len(tokens)), k))
                mask = [j in chosen for j in range(len(tokens))]
            out.append((highlight(tokens, mask), int(window.activating), window))
        return out, held_out


def balanced_interval(labels: list[int], answers: list[int],
                      confidence: float) -> tuple[float, float] | None:
    """An interval for balanced accuracy: the mean of the Wilson bounds of recall and
    specificity (each a proportion); conservative, since both bounds are taken at once."""
    positives = [a for y, a in zip(labels, answers) if y]
    negatives = [1 - a for y, a in zip(labels, answers) if not y]
    tpr, tnr = wilson(sum(positives), len(positives), confidence), wilson(sum(negatives), len(negatives), confidence)
    if tpr is None or tnr is None:
        return None
    return (tpr[0] + tnr[0]) / 2, (tpr[1] + tnr[1]) / 2


def _turn(explanation: str, texts: list[str]) -> str:
    blocks = [f"<example {i}>{text}</example {i}>" for i, text in enumerate(texts, 1)]
    return prompts.explanation_line(explanation) + "\n" + "\n".join(blocks)
