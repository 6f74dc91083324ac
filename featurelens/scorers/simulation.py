"""The ``simulation`` scorer: OpenAI's method, in three modes chosen by the provider.

A simulator LLM reads only the explanation and predicts the feature's 0-10 activation
at every token of held-out windows (activating and random together); the score is the
Pearson correlation between true activations and predictions over all windows
concatenated, not a mean of per-window correlations. Constant truth or predictions
make it undefined (``status='undefined'``, score NULL).

Modes (``mode='auto'`` picks the first the provider can do):

- ``prompt-logprobs``: many windows per plain-text prompt, every token followed by
  ``<TAB>?`` (``line_format``, :mod:`featurelens.scorers.simulation_lines`); one
  forward pass gives the distribution over "0".."10" after each tab and its expected
  value is the prediction. The shared instructions and few-shot feature come first,
  so the per-feature cost is mostly the windows.
- ``output-logprobs``: the model writes one line of integers per window; the
  log-probabilities of each written digit turn it into an expected value.
- ``json``: the model writes the integers as JSON (providers without log-probs).

By default the windows go out in rounds (:mod:`featurelens.scorers.adaptive`): scoring
stops once the bootstrap interval of the correlation is narrower than ``ci_width`` (0.25);
``adaptive=false`` sends every window at once. Every score reports its interval. The
rounds are dealt ``order=stratified`` (:mod:`featurelens.scorers.window_order`): each
holds activating and random windows in their overall proportion, activating ones across
the quantile bins, so an early stop has seen a fair sample. Over independent draws and
noise levels (``benchmarks/cost_robust.py``) that keeps the AUROC closer to the full
score's than shuffled rounds at the same cost; ``order=shuffled`` is the order before.
The interval resamples all windows together (``bootstrap=pooled``);
``bootstrap=stratified`` (:mod:`featurelens.scorers.bootstrap_strata`) resamples them
within their stratum, as the test set was drawn: narrower on sparse features, an option
until a benchmark shows it both saves windows and keeps fidelity (BENCHMARKS.md).
A width of 0.3 saves a fifth of the simulation tokens but does not pass that benchmark's
rule, so it stays an option.
Later rounds are sized from the interval (``round_size=sized``, :mod:`.sized_rounds`):
a feature that misses the width by a little gets a few more windows (at least
``min_round``), not another full round; over 18 draws that cuts simulation tokens about
3 % and passes ``cost_robust.py``'s rule. ``round_size=fixed`` makes every round
``round_windows`` (the cost benchmarks compare the two).
``random_window`` crops the random (mostly silent) windows shorter than ``window``;
``first_round`` makes the first round larger than the next ones, so a feature that needs
two rounds pays the shared prefix and the explanation once instead of twice.
"""

from __future__ import annotations

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
from featurelens.llm.window_text import neutralise
from featurelens.scorers import prompts
from featurelens.scorers import simulation_parse as read
from featurelens.scorers.adaptive import rounds_from_options
from featurelens.scorers.bootstrap_strata import (
    check_bootstrap,
    stratified_bootstrap_correlation,
    window_stratum,
)
from featurelens.scorers.intervals import bootstrap_correlation
from featurelens.scorers.metrics import pearson
from featurelens.scorers.scoring_windows import (
    Window,
    feature_rng,
    scorer_fallbacks,
    scorer_kinds,
    test_windows,
)
from featurelens.scorers.simulation_lines import line_format as _line_format
from featurelens.scorers.sized_rounds import check_round_size, next_size, plan
from featurelens.scorers.window_order import check_order

MODES = ("prompt-logprobs", "output-logprobs", "json")


class SimulationScorer(ScorerBase):
    """Correlation between true activations and a simulator's predictions."""

    name = "simulation"

    def __init__(self, mode: str = "auto", n_activating: int = 50, n_random: int = 50,
                 window: int = 16, per_prompt: int | None = None, top_logprobs: int = 20,
                 keep_values: bool = True, adaptive: bool | str = True, ci_width: float = 0.25,
                 round_windows: int = 10, confidence: float = 0.95, line_format: str = "terse",
                 random_window: int | None = None, first_round: int | None = None,
                 order: str = "stratified", bootstrap: str = "pooled", round_size: str = "sized",
                 min_round: int = 4):
        if mode != "auto" and mode not in MODES:
            raise FeaturelensError(
                f"Simulation mode {mode!r} is unknown; use auto or one of {', '.join(MODES)}.")
        if (n_activating < 1 or n_random < 0 or window < 2 or (per_prompt is not None and per_prompt < 1)
                or (random_window is not None and int(random_window) < 2)
                or (first_round is not None and int(first_round) < 1)):
            raise FeaturelensError(
                "Simulation needs n_activating >= 1, n_random >= 0, window >= 2, random_window >= 2, "
                "first_round >= 1 and per_prompt >= 1; fix the scorer options.")
        self.mode = mode
        self.n_activating, self.n_random, self.window = int(n_activating), int(n_random), int(window)
        self.per_prompt = per_prompt
        self.top_logprobs = int(top_logprobs)
        self.keep_values = bool(keep_values)
        self.rounds = rounds_from_options(adaptive, ci_width, round_windows, confidence)
        self.lines = _line_format(line_format)
        self.random_window = min(self.window, int(random_window)) if random_window is not None else self.window
        self.first_round = int(first_round) if first_round is not None else self.rounds.round_windows
        self.order = check_order(order)
        self.bootstrap = check_bootstrap(bootstrap)
        self.round_size = check_round_size(round_size, min_round, self.rounds.round_windows)
        self.min_round = int(min_round)

    def options(self) -> dict[str, Any]:
        """What changes the requests; stored with the score to reproduce it."""
        return {"mode": self.mode, "n_activating": self.n_activating, "n_random": self.n_random,
                "window": self.window, "per_prompt": self.per_prompt,
                "top_logprobs": self.top_logprobs, "line_format": self.lines.name,
                "random_window": self.random_window, **self.rounds.options(),
                **({"first_round": self.first_round} if self.rounds.enabled else {}),
                "order": self.order, "bootstrap": self.bootstrap,
                **({"round_size": self.round_size} if self.rounds.enabled else {}),
                **({"min_round": self.min_round} if self._sized() else {})}

    def example_kinds(self) -> dict[str, int | None]:
        """The stored windows this scorer reads, so the engine loads only those."""
        return scorer_kinds(self.n_activating, self.n_random)

    def example_fallbacks(self) -> dict[str, dict[str, int | None]]:
        """Top windows, read only for a feature without quantile windows."""
        return scorer_fallbacks(self.n_activating)

    def example_width(self) -> int:
        """It shows ``window`` tokens around each window's peak (random ones ``random_window``,
        never more): the rest is never read."""
        return self.window

    def choose_mode(self, capabilities: frozenset[str]) -> str:
        """The configured mode, or the best one the provider's capabilities allow."""
        if self.mode != "auto":
            return self.mode
        if "prompt_logprobs" in capabilities:
            return "prompt-logprobs"
        if "output_logprobs" in capabilities:
            return "output-logprobs"
        return "json"

    def _sized(self) -> bool:
        return self.rounds.enabled and self.round_size == "sized"

    def _test_windows(self, record: FeatureRecord) -> tuple[list[Window], bool]:
        return test_windows(record, self.n_activating, self.n_random, self.window, self.name,
                            random_width=self.random_window, order=self.order)

    def _groups(self, record: FeatureRecord, mode: str, responses: list[LLMResponse | None] | None = None,
                parsed: dict[int, Any] | None = None) -> tuple[list[list[Window]], bool]:
        windows, held_out = self._test_windows(record)
        if self._sized():
            return self._sized_plan(record, mode, windows, held_out, responses or [], parsed)[0], held_out
        size = self._per_request(mode)
        if not self.rounds.enabled or self.first_round == self.rounds.round_windows:
            return list(batched(windows, size)), held_out
        first = windows[:self.first_round]
        return (list(batched(first, self._per_request(mode, self.first_round)))
                + list(batched(windows[len(first):], size))), held_out

    def _sized_plan(self, record: FeatureRecord, mode: str, windows: list[Window], held_out: bool,
                    responses: list[LLMResponse | None],
                    parsed: dict[int, Any] | None = None) -> tuple[list[list[Window]], int]:
        """Groups with later rounds sized from the interval (:mod:`.sized_rounds`), and the
        number of requests in the next round. ``parsed`` keeps each answer's predictions
        across the rounds' intervals (a planned group never changes), so every answer is
        read once, not once per later round."""
        parsed = {} if parsed is None else parsed

        def state(groups: list[list[Window]]):
            metrics = self._score_groups(record, groups, held_out, responses[:len(groups)], mode,
                                         parsed).metrics
            return metrics["interval"], metrics["n_windows_scored"]

        return plan(windows, self.first_round, self.rounds.round_windows, len(responses),
                    lambda part: list(batched(part, self._per_request(mode, len(part)))),
                    state, self.rounds.narrow,
                    lambda n, interval: next_size(n, interval, self.rounds.ci_width, self.min_round,
                                                  self.rounds.round_windows))

    def _first_requests(self, mode: str) -> int:
        """Requests in the first round."""
        if self.first_round == self.rounds.round_windows:
            return self.rounds.per_round(self._per_request(mode))
        return -(-self.first_round // self._per_request(mode, self.first_round))

    def _per_request(self, mode: str, round_windows: int | None = None) -> int:
        if self.per_prompt:
            return self.per_prompt
        if mode != "prompt-logprobs":
            return 5
        return min(25, round_windows or self.rounds.round_windows) if self.rounds.enabled else 25

    # -- requests -------------------------------------------------------------------
    def requests(self, record: FeatureRecord, explanation: str,
                 capabilities: frozenset[str]) -> list[LLMRequest]:
        """The first round's requests (every request when not adaptive)."""
        mode = self.choose_mode(capabilities)
        every = self.all_requests(record, explanation, capabilities)
        return every[:self._first_requests(mode)] if self.rounds.enabled else every

    def more_requests(self, record: FeatureRecord, explanation: str,
                      responses: list[LLMResponse | None],
                      capabilities: frozenset[str]) -> list[LLMRequest]:
        """The next round given the answers so far, or ``[]`` when the score is stable."""
        if not self.rounds.enabled:
            return []
        mode = self.choose_mode(capabilities)
        if self._sized():
            windows, held_out = self._test_windows(record)
            groups, following = self._sized_plan(record, mode, windows, held_out, responses)
            return self._requests_for(explanation, groups[len(responses):len(responses) + following], mode)
        result = self.score(record, explanation, responses, capabilities)
        return self.rounds.next(self.all_requests(record, explanation, capabilities), len(responses),
                                self._per_request(mode), result.metrics.get("interval"))

    def all_requests(self, record: FeatureRecord, explanation: str,
                     capabilities: frozenset[str]) -> list[LLMRequest]:
        """Every request up to the hard maximum of windows (the rounds, in order)."""
        mode = self.choose_mode(capabilities)
        groups, _ = self._groups(record, mode)
        return self._requests_for(explanation, groups, mode)

    def _requests_for(self, explanation: str, groups: list[list[Window]], mode: str) -> list[LLMRequest]:
        if mode == "prompt-logprobs":
            return [self._all_at_once(explanation, group) for group in groups]
        return [self._chat(explanation, group, mode) for group in groups]

    def _all_at_once(self, explanation: str, group: list[Window]) -> LLMRequest:
        shared, parts = self.lines.parts(explanation, [w.example.tokens for w in group])
        return LLMRequest(prompt=shared + "\n".join(parts), max_tokens=0, temperature=0.0,
                          prompt_logprobs=self.top_logprobs, purpose="score:simulation",
                          shared_prompt_chars=len(shared), prompt_logprobs_after="\t")

    def _chat(self, explanation: str, group: list[Window], mode: str) -> LLMRequest:
        answer_rule = prompts.JSON_ANSWER if mode == "json" else prompts.LINES_ANSWER
        tokens, values = prompts.SIMULATION_SHOT
        shot_user = _chat_turn(prompts.SIMULATION_SHOT_EXPLANATION, [tokens])
        shot_answer = ('{"1": [' + ", ".join(map(str, values)) + "]}" if mode == "json"
                       else "1: " + " ".join(map(str, values)))
        messages = [{"role": "system", "content": f"{prompts.SIMULATION_RULES} {answer_rule}"},
                    {"role": "user", "content": shot_user},
                    {"role": "assistant", "content": shot_answer},
                    {"role": "user", "content": _chat_turn(explanation, [w.example.tokens for w in group])}]
        n_tokens = sum(len(w.example.tokens) for w in group)
        return LLMRequest(messages=messages, max_tokens=3 * n_tokens + 8 * len(group) + 16,
                          temperature=0.0, shared_prefix=3, json_output=mode == "json",
                          top_logprobs=self.top_logprobs if mode == "output-logprobs" else 0,
                          purpose="score:simulation")

    # -- scoring ----------------------------------------------------------------------
    def score(self, record: FeatureRecord, explanation: str,
              responses: list[LLMResponse | None], capabilities: frozenset[str] | None = None) -> ScoreResult:
        mode = self._mode_of(responses, capabilities)
        parsed: dict[int, Any] = {}
        groups, held_out = self._groups(record, mode, responses, parsed)
        return self._score_groups(record, groups, held_out, responses, mode, parsed)

    def _predictions(self, group: list[Window], response: LLMResponse, mode: str) -> tuple[list, int]:
        """Per-window predictions read from ``response`` and the digits it left missing."""
        lengths = [len(w.example.tokens) for w in group]
        if mode == "prompt-logprobs":
            return read.from_prompt_logprobs(response, lengths, self.lines.placeholder)
        if mode == "output-logprobs":
            return read.from_lines(response, lengths), 0
        return read.from_json(response, lengths), 0

    def _score_groups(self, record: FeatureRecord, groups: list[list[Window]], held_out: bool,
                      responses: list[LLMResponse | None], mode: str,
                      parsed: dict[int, Any] | None = None) -> ScoreResult:
        truth: list[float] = []
        predicted: list[float] = []
        failures: list[str] = []
        n_failed_requests = 0
        missing_digits = 0
        n_scored = 0
        kept: list[dict[str, Any]] = []
        pairs: list[tuple[list[float], list[float]]] = []
        strata: list[str] = []
        parsed = {} if parsed is None else parsed  # group index -> (predictions, missing digits)
        for i, (group, response) in enumerate(zip(groups, responses)):
            if response is None:
                n_failed_requests += 1
                continue
            if i not in parsed:
                parsed[i] = self._predictions(group, response, mode)
            predictions, missing = parsed[i]
            missing_digits += missing
            for window, values in zip(group, predictions):
                if isinstance(values, ParseError):
                    failures.append(str(values))
                    continue
                truth.extend(window.example.activations)
                predicted.extend(values)
                pairs.append((window.example.activations, values))
                strata.append(window_stratum(window.example.kind))
                n_scored += 1
                if self.keep_values:
                    kept.append({"kind": window.example.kind, "quantile": window.example.quantile,
                                 "tokens": window.example.tokens,
                                 "true": [round(a, 4) for a in window.example.activations],
                                 "predicted": [round(p, 3) for p in values]})
        correlation = pearson(truth, predicted) if truth else None
        if not truth:
            status = "failed"
        elif correlation is None:
            status = "undefined"
        else:
            status = "ok"
        n_windows = sum(len(g) for g in groups[:len(responses)])
        interval = self._interval(record, pairs, strata) if status == "ok" else None
        metrics = {"correlation": correlation, "mode": mode, "n_windows": n_windows,
                   "n_windows_scored": n_scored, "n_windows_max": sum(len(g) for g in groups),
                   "interval": interval, "confidence": self.rounds.confidence,
                   "n_failed_requests": n_failed_requests, "positions_without_digit_probs": missing_digits,
                   "held_out": held_out}
        details = {"parse_failures": failures[:20], "windows": kept if self.keep_values else []}
        return ScoreResult(correlation if status == "ok" else None, status, metrics, details,
                           n_parse_failures=len(failures))

    def _interval(self, record: FeatureRecord, pairs: list[tuple[list[float], list[float]]],
                  strata: list[str]) -> tuple[float, float] | None:
        seed = feature_rng(record, self.name).getrandbits(32)
        if self.bootstrap == "pooled":
            return bootstrap_correlation(pairs, seed, self.rounds.confidence)
        return stratified_bootstrap_correlation(pairs, strata, seed, self.rounds.confidence)

    def _mode_of(self, responses: list[LLMResponse | None], capabilities: frozenset[str] | None) -> str:
        if capabilities is not None or self.mode != "auto":
            return self.choose_mode(capabilities or frozenset())
        for response in responses:
            if response is None:
                continue
            if response.prompt_logprobs:
                return "prompt-logprobs"
            if response.output_logprobs:
                return "output-logprobs"
            return "json" if (response.text or "").lstrip().startswith(("{", "[", "```")) else "output-logprobs"
        return "json"


def _chat_turn(explanation: str, windows: list[list[str]]) -> str:
    blocks = []
    for i, tokens in enumerate(windows, 1):
        lines = "\n".join(neutralise(t) for t in tokens)
        blocks.append(f"<example {i}> ({len(tokens)} tokens)\n{lines}\n</example {i}>")
    return prompts.explanation_line(explanation) + "\n" + "\n".join(blocks)
