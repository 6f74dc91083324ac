"""Is a cheaper simulation default faithful on every draw, not just on one run?

``benchmarks/cost.py`` compares each scoring setting with the full score on one draw:
one oracle noise sample, one window order per feature, one set of planted features.
At 360 explanations the AUROC is only known to about +-0.01, so a setting can pass
or fail there by luck. This script repeats the comparison over several independent
draws (``--seeds``) at several oracle noise levels (``--noise``) and reports, per
setting, the mean and spread of the Spearman correlation with the full score and of
the AUROC difference (cheap minus full, right vs wrong explanations).

A draw changes everything random: new planted features (their windows and rules'
hits), a new window order and bootstrap seed for every real feature (its dictionary
id is renamed, which is what seeds them), new explanation qualities ``q`` and new
oracle noise (the oracle seeds its noise by the explanation text, which names the
draw). The store's real features are the same in every draw.

The rule (printed with the verdict): a setting is robustly faithful when Spearman is
at least 0.95 in every draw up to ``--rule-noise`` (2, the level ``cost.py`` uses) and
the AUROC difference, pooled over all draws, is not below -0.01 with 95 % confidence
(mean - 1.96 standard errors >= -0.01: non-inferiority at the +-0.01 a single run can
resolve). The current default is held to the same rule. Noisier draws are reported
but not held to 0.95: there every adaptive setting, the previous default included, falls
below it. Each draw also scores the full setting again with fresh oracle noise
("retest"): how well the full score agrees with itself, which no cheaper score can beat.

Scoring runs the real scorer (requests, follow-up rounds, parsing, bootstrap interval)
in-process against the offline simulators, without the engine and store that
``cost.py`` goes through (the answers are the same; this is about 5x faster, which is
what makes many draws affordable). Simulation input tokens are o200k counts of every
request sent; the explanation's are in ``cost.py``.

    TIKTOKEN_CACHE_DIR=... .venv/bin/python benchmarks/cost_robust.py --real-store PATH [--seeds 4]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from featurelens.core.host.protocols import FeatureRecord, LLMRequest, LLMResponse
from featurelens.core.selection import Selection, stream_records
from featurelens.core.store.database import Store
from featurelens.llm.request_tokens import Counter
from featurelens.scorers.simulation import SimulationScorer
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

sys.path.insert(0, str(Path(__file__).parent))
from cost import auroc, auroc_difference, spearman  # the same statistics as cost.py

CAPS = frozenset({"prompt_logprobs"})
#: today's full score: every window (100), 32 tokens, OpenAI's layout
FULL: dict[str, Any] = {"adaptive": False, "window": 32, "line_format": "openai"}
MARGIN = 0.01  #: non-inferiority margin of the pooled AUROC difference


@dataclass(frozen=True)
class Candidate:
    label: str
    options: dict[str, Any]


SHUFFLED = {"order": "shuffled", "bootstrap": "pooled", "round_size": "fixed"}  #: the order before stratified rounds
POOLED = {"bootstrap": "pooled", "round_size": "fixed"}  #: the interval and rounds before this change
STRAT = {"order": "stratified", **POOLED}

CANDIDATES = [
    Candidate("old defaults (ci<.25 r10 16)", {**SHUFFLED, "ci_width": 0.25}),
    Candidate("ci<.3 r10 16", {**SHUFFLED, "ci_width": 0.3}),
    Candidate("ci<.25 r10 8", {**SHUFFLED, "ci_width": 0.25, "window": 8}),
    Candidate("ci<.25 r10 12", {**SHUFFLED, "ci_width": 0.25, "window": 12}),
    Candidate("strat ci<.25 r10 16", {**STRAT, "ci_width": 0.25}),
    Candidate("strat ci<.3 r10 16", {**STRAT, "ci_width": 0.3}),
    Candidate("strat ci<.25 r10 12", {**STRAT, "ci_width": 0.25, "window": 12}),
    Candidate("strat ci<.3 r10 12", {**STRAT, "window": 12, "ci_width": 0.3}),
    Candidate("strat ci<.35 r10 16", {**STRAT, "ci_width": 0.35}),
    Candidate("previous defaults (pooled boot)", {**POOLED}),
    Candidate("strat boot ci<.25 r10 16", {"bootstrap": "stratified", "round_size": "fixed", "ci_width": 0.25}),
    Candidate("strat boot ci<.2 r10 16", {"bootstrap": "stratified", "round_size": "fixed", "ci_width": 0.2}),
    Candidate("sized min4 (pooled boot)", {**POOLED, "round_size": "sized"}),
    Candidate("sized min2 (pooled boot)", {**POOLED, "round_size": "sized", "min_round": 2}),
    Candidate("sized min4 strat boot", {"bootstrap": "stratified", "round_size": "sized"}),
    Candidate("new defaults", {}),
]


@dataclass
class Draw:
    """One independent draw: records, explanations (id -> (record, text, right?)), simulator."""

    records: list[FeatureRecord]
    explanations: dict[str, tuple[FeatureRecord, str, bool]]
    oracle: NoisyOracle


class Simulator:
    """The noisy oracle for real features' explanations, the faithful rule simulator for planted ones."""

    def __init__(self, oracle: NoisyOracle):
        self.oracle, self.rule = oracle, RuleSimulator()

    def answer(self, request: LLMRequest) -> LLMResponse:
        text = request.prompt or ""
        explanation = text.rsplit("Feature explanation: ", 1)[-1].split("\n", 1)[0].strip()
        return (self.oracle if explanation in self.oracle.explanations else self.rule).answer(request)


def replace_oracle(oracle: NoisyOracle, noise: float) -> NoisyOracle:
    """The same oracle (records, explanations, qualities) with an independent noise draw."""
    fresh = NoisyOracle([], oracle.explanations, noise=noise, salt="retest")
    fresh.index = oracle.index
    return fresh


def make_draw(seed: int, noise: float, real: list[FeatureRecord], planted_seeds: int,
              planted_oracle: bool = False) -> Draw:
    rng = random.Random(10_000 + seed)
    planted = [r for i in range(planted_seeds) for r in planted_records(
        length=32, n_top=10, n_quantile=50, n_random=50, seed=1_000 * seed + i, dictionary_id=f"planted-{seed}-{i}")]
    renamed = [replace(r, dictionary_id=f"{r.dictionary_id}@draw{seed}") for r in real]
    texts = [text for _, text in PLANTED.values()]
    explanations: dict[str, tuple[FeatureRecord, str, bool]] = {}
    registry: dict[str, Planted] = {}
    for record in planted if not planted_oracle else []:
        explanations[f"{record.dictionary_id}/{record.feature}/right"] = (record, texts[record.feature], True)
        explanations[f"{record.dictionary_id}/{record.feature}/wrong"] = (
            record, texts[(record.feature + 1) % len(texts)], False)
    real_ids = {r.dictionary_id for r in renamed}
    for record in renamed + (planted if planted_oracle else []):
        for tag, quality in (("right", rng.uniform(0.1, 1.0)), ("wrong", rng.uniform(0.0, 0.3))):
            text = (f"real feature {record.feature} explanation {tag} draw {seed}" if record.dictionary_id in real_ids
                    else f"planted feature {record.dictionary_id}/{record.feature} explanation {tag}")
            registry[text] = Planted(record.dictionary_id, record.feature, quality)
            explanations[f"{record.dictionary_id}/{record.feature}/{tag}"] = (record, text, tag == "right")
    return Draw(planted + renamed, explanations, NoisyOracle(planted + renamed, registry, noise=noise))


@dataclass
class Scored:
    scores: dict[str, float | None]
    windows: float  #: mean windows scored per explanation
    rounds: float  #: mean rounds (request batches) per explanation
    tokens: float  #: mean o200k simulation input tokens per explanation


def score_draw(draw: Draw, options: dict[str, Any], counter: Counter) -> Scored:
    """Every explanation of ``draw`` scored with ``options``, rounds followed as the engine does."""
    scorer = SimulationScorer(**options)
    simulator = Simulator(draw.oracle)
    scores: dict[str, float | None] = {}
    windows = rounds = tokens = 0
    for eid, (record, text, _) in draw.explanations.items():
        requests = scorer.requests(record, text, CAPS)
        responses: list[LLMResponse | None] = []
        while requests:
            rounds += 1
            for request in requests:
                tokens += counter.request(request).total
                responses.append(simulator.answer(request))
            requests = scorer.more_requests(record, text, responses, CAPS)
        result = scorer.score(record, text, responses, CAPS)
        scores[eid] = result.score
        windows += result.metrics["n_windows"]
    n = len(draw.explanations)
    return Scored(scores, windows / n, rounds / n, tokens / n)


def compare(full: dict[str, float | None], cheap: dict[str, float | None],
            truth: dict[str, bool]) -> tuple[float, float, float, tuple[float, float]]:
    """Spearman, AUROC difference, mean absolute difference, and the paired 95 % interval."""
    ids = [i for i in full if full[i] is not None and cheap.get(i) is not None]
    a = {i: float(full[i]) for i in ids}  # type: ignore[arg-type]
    b = {i: float(cheap[i]) for i in ids}  # type: ignore[arg-type]
    rho = spearman([a[i] for i in ids], [b[i] for i in ids])
    full_area = auroc([a[i] for i in ids if truth[i]], [a[i] for i in ids if not truth[i]])
    cheap_area = auroc([b[i] for i in ids if truth[i]], [b[i] for i in ids if not truth[i]])
    mad = sum(abs(a[i] - b[i]) for i in ids) / len(ids)
    return rho, cheap_area - full_area, mad, auroc_difference(a, b, ids, truth, resamples=200)


def summarise(label: str, rows: list[dict[str, float]], rule_noise: float) -> dict[str, Any]:
    """Mean and spread over draws, and the robust verdict (module doc)."""
    rhos = [r["rho"] for r in rows]
    ruled = [r["rho"] for r in rows if r["noise"] <= rule_noise]
    deltas = [r["delta"] for r in rows]
    sd = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
    low = statistics.fmean(deltas) - 1.96 * sd / math.sqrt(len(deltas))
    significant = sum(1 for r in rows if r["ci_high"] < 0)
    robust = min(ruled) >= 0.95 and low >= -MARGIN
    return {"label": label, "rho_mean": statistics.fmean(rhos), "rho_sd": statistics.stdev(rhos) if len(rhos) > 1 else 0.0,
            "rho_min": min(rhos), "rho_min_ruled": min(ruled), "delta_mean": statistics.fmean(deltas), "delta_sd": sd, "delta_low": low,
            "delta_min": min(deltas), "significant": significant, "n": len(rows),
            "windows": statistics.fmean(r["windows"] for r in rows), "rounds": statistics.fmean(r["rounds"] for r in rows),
            "tokens": statistics.fmean(r["tokens"] for r in rows), "mad": statistics.fmean(r["mad"] for r in rows),
            "robust": robust}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-store", type=Path, required=True, help="an extracted store (see cost.py)")
    parser.add_argument("--real-features", type=int, default=120)
    parser.add_argument("--planted-seeds", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4, help="independent draws per noise level")
    parser.add_argument("--first-seed", type=int, default=0, help="draws are numbered from here (fresh draws)")
    parser.add_argument("--noise", type=float, nargs="+", default=[1.0, 2.0, 3.0],
                        help="oracle noise levels (sd on the 0-10 scale)")
    parser.add_argument("--rule-noise", type=float, default=2.0,
                        help="the spearman >= 0.95 rule applies to draws up to this noise (2: cost.py's level)")
    parser.add_argument("--only", nargs="*", default=None, help="only candidates whose label starts with these")
    parser.add_argument("--planted-oracle", action="store_true",
                        help="score planted features' explanations with the noisy oracle too (qualities "
                             "drawn as for real ones): sparse features, 50 activating + 50 random windows, "
                             "where the identity dictionary's real features are dense (few random windows)")
    args = parser.parse_args()
    counter = Counter()
    if not counter.exact:
        sys.exit("o200k is unavailable: put o200k_base.tiktoken in $TIKTOKEN_CACHE_DIR (see ANCHORS.md).")
    candidates = [c for c in CANDIDATES if not args.only or any(c.label.startswith(o) for o in args.only)]
    started = time.perf_counter()
    with Store.open(args.real_store, read_only=True) as store:
        real = [r for chunk in stream_records(store, Selection("fire_count >= 20", None, args.real_features), 256)
                for r in chunk]
    rows: dict[str, list[dict[str, float]]] = {c.label: [] for c in candidates}
    full_rows: list[dict[str, float]] = []
    draws = [(noise, seed) for noise in args.noise for seed in range(args.first_seed, args.first_seed + args.seeds)]
    print(f"{len(draws)} draws ({args.seeds} per noise level {', '.join(f'{n:g}' for n in args.noise)}); "
          f"each {3 * args.planted_seeds} planted + {len(real)} real features, "
          f"{2 * (3 * args.planted_seeds + len(real))} explanations (right and wrong); tokens counted with "
          f"{counter.name}\n")
    for noise, seed in draws:
        t0 = time.perf_counter()
        draw = make_draw(seed, noise, real, args.planted_seeds, args.planted_oracle)
        truth = {eid: right for eid, (_, _, right) in draw.explanations.items()}
        full = score_draw(draw, FULL, counter)
        ids = [i for i, s in full.scores.items() if s is not None]
        full_area = auroc([full.scores[i] for i in ids if truth[i]], [full.scores[i] for i in ids if not truth[i]])  # type: ignore[misc]
        # test-retest: the full score again with an independent noise draw, the most any score can agree
        retest_draw = Draw(draw.records, draw.explanations, replace_oracle(draw.oracle, noise))
        retest = score_draw(retest_draw, FULL, counter)
        rho_retest, _, _, _ = compare(full.scores, retest.scores, truth)
        full_rows.append({"auroc": full_area, "windows": full.windows, "tokens": full.tokens,
                          "rho_retest": rho_retest, "noise": noise})
        line = [f"noise {noise:g} draw {seed}: full AUROC {full_area:.3f}, retest rho {rho_retest:.3f}"]
        for candidate in candidates:
            cheap = score_draw(draw, candidate.options, counter)
            rho, delta, mad, ci = compare(full.scores, cheap.scores, truth)
            rows[candidate.label].append({"noise": noise, "rho": rho, "delta": delta, "mad": mad, "ci_low": ci[0], "ci_high": ci[1],
                                          "windows": cheap.windows, "rounds": cheap.rounds, "tokens": cheap.tokens})
            line.append(f"{candidate.label}: rho {rho:.3f} dAUROC {delta:+.3f} [{ci[0]:+.3f},{ci[1]:+.3f}]")
        print("; ".join(line) + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    print(f"full score (100 windows of 32 tokens): AUROC {statistics.fmean(r['auroc'] for r in full_rows):.3f} "
          f"mean over draws (min {min(r['auroc'] for r in full_rows):.3f}, max {max(r['auroc'] for r in full_rows):.3f}); "
          f"{statistics.fmean(r['windows'] for r in full_rows):.1f} windows, "
          f"{statistics.fmean(r['tokens'] for r in full_rows):,.0f} simulation tokens per explanation\n")
    header = (f"{'setting':<30}{'win':>6}{'rounds':>7}{'sim in':>8}{'spearman mean±sd':>18}{'min':>7}{'min*':>7}"
              f"{'dAUROC mean±sd':>17}{'low95':>8}{'min':>8}{'sig<0':>7}{'MAD':>7}  robust")
    print(header)
    print("-" * len(header))
    summaries = []
    for candidate in candidates:
        s = summarise(candidate.label, rows[candidate.label], args.rule_noise)
        summaries.append(s)
        print(f"{s['label']:<30}{s['windows']:>6.1f}{s['rounds']:>7.2f}{s['tokens']:>8,.0f}"
              f"{s['rho_mean']:>11.3f}±{s['rho_sd']:.3f}{s['rho_min']:>7.3f}{s['rho_min_ruled']:>7.3f}"
              f"{s['delta_mean']:>+10.4f}±{s['delta_sd']:.4f}{s['delta_low']:>+8.4f}{s['delta_min']:>+8.3f}"
              f"{s['significant']:>4}/{s['n']:<2}{s['mad']:>7.3f}  {'yes' if s['robust'] else 'NO'}")
    print(f"\nrobust: spearman >= 0.95 in every draw at noise <= {args.rule_noise:g} (min*) and the AUROC "
          f"difference pooled over all draws: mean - 1.96 se >= -{MARGIN} (low95); sig<0: draws whose paired "
          f"95% interval lies below 0")
    print("\nper noise level (mean over draws; min spearman in brackets); retest = the full score against "
          "itself with fresh noise, the agreement no cheaper score can beat")
    for noise in args.noise:
        retests = [r["rho_retest"] for r in full_rows if r["noise"] == noise]
        parts = [f"retest rho {statistics.fmean(retests):.3f} [{min(retests):.3f}]"]
        for candidate in candidates:
            chosen = [r for (n, _), r in zip(draws, rows[candidate.label]) if n == noise]
            parts.append(f"{candidate.label} rho {statistics.fmean(r['rho'] for r in chosen):.3f} "
                         f"[{min(r['rho'] for r in chosen):.3f}] dAUROC {statistics.fmean(r['delta'] for r in chosen):+.4f}")
        print(f"noise {noise:g}: " + "; ".join(parts))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
