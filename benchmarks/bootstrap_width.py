"""How much narrower is the stratified bootstrap interval than the pooled one?

Simulation's stopping rule compares the interval's width with ``ci_width``; a narrower
interval stops earlier. This script scores planted features (10 top + 50 quantile + 50
random windows of 16 tokens, stratified rounds) with the noisy oracle at a set noise
(explanation quality ``q`` drawn from U(0.1, 1)) and reports, after the first 10, 20 and
30 windows, the mean width of both intervals over the same answers, their ratio, and
how often each is under 0.25 (the default width), i.e. how often the stopping decision
would differ. It prints the ratio measured in this one run.

    .venv/bin/python benchmarks/bootstrap_width.py [--seeds 10] [--noise 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics

from featurelens.scorers.simulation import SimulationScorer
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import planted_records

CAPS = frozenset({"prompt_logprobs"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="planted stores (3 features each)")
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--width", type=float, default=0.25)
    args = parser.parse_args()
    rng = random.Random(0)
    scorers = {b: SimulationScorer(adaptive=True, round_windows=10, round_size="fixed", bootstrap=b)
               for b in ("pooled", "stratified")}
    widths: dict[tuple[str, int], list[float]] = {}
    differ = {n: 0 for n in (10, 20, 30)}
    cases = 0
    for seed in range(args.seeds):
        records = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=seed,
                                  dictionary_id=f"w{seed}")
        registry = {f"e{seed}-{r.feature}": Planted(r.dictionary_id, r.feature, rng.uniform(0.1, 1.0)) for r in records}
        oracle = NoisyOracle(records, registry, noise=args.noise)
        for record in records:
            text = f"e{seed}-{record.feature}"
            requests = SimulationScorer(adaptive=True, round_windows=10,
                                        round_size="fixed").all_requests(record, text, CAPS)
            responses = [asyncio.run(oracle.complete(r)) for r in requests[:3]]
            cases += 1
            for n in (10, 20, 30):
                under = {}
                for name, scorer in scorers.items():
                    interval = scorer.score(record, text, responses[:n // 10], CAPS).metrics["interval"]
                    if interval is None:
                        continue
                    widths.setdefault((name, n), []).append(interval[1] - interval[0])
                    under[name] = interval[1] - interval[0] < args.width
                differ[n] += len(set(under.values())) > 1
    print(f"{cases} planted features, oracle noise {args.noise}, 16-token windows, stratified rounds")
    print(f"{'windows':>8} {'pooled':>8} {'strat':>8} {'strat/pooled':>13} {'decision differs':>17}")
    for n in (10, 20, 30):
        pooled, strat = statistics.mean(widths[("pooled", n)]), statistics.mean(widths[("stratified", n)])
        print(f"{n:>8} {pooled:>8.3f} {strat:>8.3f} {strat / pooled:>13.3f} {differ[n]:>10}/{cases}")


if __name__ == "__main__":
    main()
