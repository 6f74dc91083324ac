"""Detection and fuzzing: how few windows keep the score faithful, and what that saves.

The adaptive default for simulation was measured by ``benchmarks/cost.py``; this does the
same for the classification scorers, whose interval is Wilson's (recall and specificity).

One run, one store. The store holds planted features (known rules, 32-token windows,
10 top + 50 quantile + 50 random, written as extraction writes them and read back with
``stream_records``). Every feature has four explanations: its right rule and a wrong
rule, answered by the faithful rule judge (``RuleSimulator``), and a right and a wrong
free-text explanation answered by the noisy judge (``featurelens.testing.classifier_oracle``),
which gets each window right with probability ``0.5 + 0.5 q``, ``q`` drawn per explanation
(right U(0.15, 1), wrong U(0, 0.35), so right and wrong overlap and the full score's AUROC
is below 1).

Each setting scores every explanation through the scorer's own rounds (``requests``, then
``more_requests`` until it says stop: what the engine's follow-ups do), with answers and
o200k counts memoised per request, so the settings differ only in how many requests they
send. Against the full score (100 windows, all at once) it prints, per scorer and setting:
windows used, calls and o200k input tokens per feature, dollars per million features for
the score alone at gpt-4o-mini and claude-haiku-4-5 list prices (live and through the batch
API, cached prefixes priced as the providers cache them), Spearman across explanations,
mean absolute difference, AUROC of right vs wrong explanations and a 95 % paired bootstrap
interval (features resampled) of its difference. Fidelity is ``benchmarks/cost.py``'s
rule: Spearman >= 0.95 and the AUROC difference's interval reaching 0.

    TIKTOKEN_CACHE_DIR=/tmp/cost_tiktoken .venv/bin/python benchmarks/cost_classifiers.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl  # noqa: F401  (cost.py's helpers need it importable)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import auroc, spearman  # noqa: E402  (the same statistics as the simulation benchmark)

from featurelens.core.host.protocols import LLMRequest, LLMResponse  # noqa: E402
from featurelens.core.progress import progress  # noqa: E402
from featurelens.core.selection import Selection, stream_records  # noqa: E402
from featurelens.core.store.database import Store  # noqa: E402
from featurelens.llm.pricing import DEFAULT_PRICES  # noqa: E402
from featurelens.llm.prompt_cache import cached_tokens  # noqa: E402
from featurelens.llm.request_tokens import Counter  # noqa: E402
from featurelens.scorers import DetectionScorer, FuzzingScorer  # noqa: E402
from featurelens.testing.classifier_oracle import NoisyJudge  # noqa: E402
from featurelens.testing.oracle import Planted  # noqa: E402
from featurelens.testing.planted_features import (  # noqa: E402
    PLANTED,
    RuleSimulator,
    planted_records,
    write_planted_store,
)

LLMS = ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")
SCORERS = {"detection": DetectionScorer, "fuzzing": FuzzingScorer}


@dataclass(frozen=True)
class Setting:
    label: str
    options: tuple[tuple[str, object], ...]


SETTINGS = [Setting("full: 100 windows", (("adaptive", False),))] + [
    Setting(f"adapt ci<{width} r{size}", (("adaptive", True), ("ci_width", width), ("round_windows", size)))
    for width in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4) for size in (10, 20)]


@dataclass
class Tally:
    """What one setting sent and scored, over every explanation."""

    scores: dict[str, float | None] = field(default_factory=dict)
    windows: int = 0
    calls: int = 0
    input: int = 0
    output: int = 0
    cached: dict[str, int] = field(default_factory=lambda: {llm: 0 for llm in LLMS})


class Judges:
    """The noisy judge for registered explanations, the faithful rule judge for the rest;
    answers and token counts memoised per request so each setting costs no new work."""

    def __init__(self, noisy: NoisyJudge, counter: Counter):
        self.noisy, self.rule, self.counter = noisy, RuleSimulator(), counter
        self.memo: dict[str, tuple[LLMResponse, int, int, dict[str, int]]] = {}

    def ask(self, request: LLMRequest) -> tuple[LLMResponse, int, int, dict[str, int]]:
        key = request.messages[0]["content"][:40] + "\0" + request.messages[-1]["content"]
        found = self.memo.get(key)
        if found is None:
            last = request.messages[-1]["content"]
            explanation = last.split("Feature explanation: ", 1)[-1].split("\n", 1)[0].strip()
            judge = self.noisy if explanation in self.noisy.explanations else self.rule
            response = judge.answer(request)
            tokens = self.counter.request(request)
            cached = {llm: cached_tokens(*llm.split(":", 1), tokens) for llm in LLMS}
            found = self.memo[key] = (response, tokens.total, self.counter.text(response.text), cached)
        return found


def run_setting(scorer, records, explanations, judges: Judges, bar) -> Tally:
    """Score every explanation the way the engine drives rounds; count what was sent."""
    tally = Tally()
    for eid, (record, text) in explanations.items():
        requests = scorer.requests(record, text)
        responses: list[LLMResponse | None] = []
        while requests:
            for request in requests:
                response, total, out, cached = judges.ask(request)
                responses.append(response)
                tally.calls += 1
                tally.input += total
                tally.output += out
                for llm in LLMS:
                    tally.cached[llm] += cached[llm]
            requests = scorer.more_requests(record, text, responses)
        result = scorer.score(record, text, responses)
        tally.scores[eid] = result.score
        tally.windows += result.metrics["n_windows"]
        bar.update(1)
    return tally


def auroc_interval(base: dict[str, float], cheap: dict[str, float], ids: list[str], truth: dict[str, bool],
                   feature_of: dict[str, str], resamples: int = 400) -> tuple[float, float]:
    """95 % paired bootstrap interval of AUROC(cheap) - AUROC(full), features resampled
    (a feature's explanations stay together, as they share windows)."""
    rng = np.random.default_rng(1)
    features = sorted({feature_of[i] for i in ids})
    members = {f: [i for i in ids if feature_of[i] == f] for f in features}
    deltas = []
    for _ in range(resamples):
        chosen = [i for f in rng.choice(len(features), len(features)) for i in members[features[f]]]
        right = [i for i in chosen if truth[i]]
        wrong = [i for i in chosen if not truth[i]]
        deltas.append(_fast_auroc([cheap[i] for i in right], [cheap[i] for i in wrong])
                      - _fast_auroc([base[i] for i in right], [base[i] for i in wrong]))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def _fast_auroc(right: list[float], wrong: list[float]) -> float:
    """Mann-Whitney AUROC with ties counted half (equals ``cost.auroc``), in numpy."""
    r, w = np.asarray(right)[:, None], np.asarray(wrong)[None, :]
    return float(((r > w).sum() + 0.5 * (r == w).sum()) / (r.size * w.size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=None, help="planted seeds (3 features each); 40, or 6 with --quick")
    parser.add_argument("--quick", action="store_true", help="a smaller run (6 seeds) to check the script")
    args = parser.parse_args()
    seeds = args.seeds or (6 if args.quick else 40)
    counter = Counter()
    if not counter.exact:
        sys.exit("o200k is unavailable: put o200k_base.tiktoken in $TIKTOKEN_CACHE_DIR (see ANCHORS.md).")
    started = time.perf_counter()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.duckdb")
        # one write: sequence ids are numbered per call, so separate calls would share them
        write_planted_store(store, [r for seed in range(seeds) for r in planted_records(
            length=32, n_top=10, n_quantile=50, n_random=50, seed=seed, dictionary_id=f"planted-{seed}")])
        records = [r for chunk in stream_records(store, Selection(None, None, None), 256) for r in chunk]
        store.close()
    texts = [text for _, text in PLANTED.values()]
    explanations, truth, feature_of, registry = {}, {}, {}, {}
    for record in records:
        key = f"{record.dictionary_id}/{record.feature}"
        rule_right, rule_wrong = texts[record.feature], texts[(record.feature + 1) % len(texts)]
        free = {"right": rng.uniform(0.15, 1.0), "wrong": rng.uniform(0.0, 0.35)}
        for tag, text in (("rule-right", rule_right), ("rule-wrong", rule_wrong),
                          *((f"noisy-{t}", f"feature {key} explanation {t}") for t in free)):
            eid = f"{key}/{tag}"
            explanations[eid] = (record, text)
            truth[eid] = tag.endswith("right")
            feature_of[eid] = key
            if tag.startswith("noisy"):
                registry[text] = Planted(record.dictionary_id, record.feature, free[tag.split("-")[1]])
    judges = Judges(NoisyJudge(records, registry, [cls() for cls in SCORERS.values()]), counter)
    print(f"{len(records)} planted features, {len(explanations)} explanations (rule-judged and noisy-judged, "
          f"right and wrong); tokens counted with {counter.name}; dollars are the score alone per million "
          "features\n")

    results: dict[str, list[tuple[Setting, Tally]]] = {}
    with progress(len(SCORERS) * len(SETTINGS) * len(explanations), desc="scoring", unit="score") as bar:
        for name, cls in SCORERS.items():
            results[name] = [(s, run_setting(cls(**dict(s.options)), records, explanations, judges, bar))
                             for s in SETTINGS]

    for name, rows in results.items():
        full = rows[0][1].scores
        means = {tag: [v for eid, v in full.items() if eid.endswith("/" + tag) and v is not None]
                 for tag in ("rule-right", "rule-wrong", "noisy-right", "noisy-wrong")}
        print(f"{name} full score, mean by explanation kind: "
              + ", ".join(f"{tag} {sum(v) / len(v):.3f}" for tag, v in means.items() if v))
    print()
    header = (f"{'scorer':<10}{'setting':<20}{'win':>6}{'calls':>6}{'in tok':>8}{'mini $/M':>9}{'batch':>7}"
              f"{'haiku $/M':>10}{'batch':>7}{'spearman':>9}{'MAD':>7}{'AUROC':>7}  {'AUROC diff 95% CI':<18}fidelity")
    print(header)
    print("-" * len(header))
    faithful: dict[str, dict[str, float]] = {}
    for name, rows in results.items():
        base = rows[0][1].scores
        for setting, tally in rows:
            n = len(explanations)
            ids = [i for i in base if base[i] is not None and tally.scores.get(i) is not None]
            full = {i: base[i] for i in ids}
            cheap = {i: tally.scores[i] for i in ids}
            rho = spearman([full[i] for i in ids], [cheap[i] for i in ids])
            mad = sum(abs(full[i] - cheap[i]) for i in ids) / len(ids)
            area = auroc([cheap[i] for i in ids if truth[i]], [cheap[i] for i in ids if not truth[i]])
            delta = (auroc_interval(full, cheap, ids, truth, feature_of) if setting is not SETTINGS[0]
                     else (0.0, 0.0))
            dollars = [DEFAULT_PRICES[llm].cost(tally.input / n, tally.output / n, tally.cached[llm] / n, batch) * 1e6
                       for llm in LLMS for batch in (False, True)]
            ok = rho >= 0.95 and delta[1] >= 0
            if ok:
                faithful.setdefault(setting.label, {})[name] = dollars[1]
            print(f"{name:<10}{setting.label:<20}{tally.windows / n:>6.1f}{tally.calls / n:>6.1f}"
                  f"{tally.input / n:>8,.0f}{dollars[0]:>9,.0f}{dollars[1]:>7,.0f}{dollars[2]:>10,.0f}"
                  f"{dollars[3]:>7,.0f}{rho:>9.3f}{mad:>7.3f}{area:>7.3f}  [{delta[0]:+.3f}, {delta[1]:+.3f}]"
                  f"{'':<3}{'holds' if ok else 'LOST'}")
        print()
    for name in SCORERS:
        label = min((s for s in faithful if name in faithful[s]), key=lambda s: faithful[s][name])
        full_cost = faithful[SETTINGS[0].label][name]
        print(f"{name}: cheapest faithful setting {label}: ${faithful[label][name]:,.0f} per million features "
              f"at gpt-4o-mini batch, full ${full_cost:,.0f} (ratio full/cheapest {full_cost / faithful[label][name]:.2f}x)")
    both = [s for s in faithful if len(faithful[s]) == len(SCORERS)]
    label = min(both, key=lambda s: sum(faithful[s].values()))
    print(f"cheapest setting faithful for both scorers (one default for both): {label}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
