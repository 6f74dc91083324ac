"""Where a feature's time goes in ``local:smollm2``: cProfile of one worker's share of the work.

Today's prompts for ``--features`` planted features (their explanations decoded together,
then the simulation's two prompts per feature) answered by ``LocalProvider._complete_batch``
in the calling thread on one torch thread, as one of the provider's one-core workers runs
them, with the provider's default prefix cache (emptied before each pass; the first pass
warms up, the second is profiled). Prints the top functions by time spent in them.

    PYTHONPATH=. .venv/bin/python benchmarks/local_profile.py [--features 3] [--top 22]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from local_speed import first_planted

from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.providers.local.provider import LocalProvider
from featurelens.scorers.simulation import SimulationScorer

EXPLANATION = "numbers and digits in lists of prices"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--top", type=int, default=22)
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = first_planted(args.features)
    provider = LocalProvider("smollm2", batch=8, workers=1)
    provider._load()
    scorer = SimulationScorer(n_activating=10, n_random=10, adaptive=False, per_prompt=10)
    explain = [r for record in records for r in TokenActivationsExplainer().requests(record)]
    simulate = [r for record in records for r in scorer.requests(record, EXPLANATION, provider.capabilities)]

    def one_pass() -> tuple[float, float]:
        if provider.prefixes is not None:
            provider.prefixes._entries.clear()
        start = time.perf_counter()
        provider._complete_batch(explain)
        middle = time.perf_counter()
        provider._complete_batch(simulate)
        return middle - start, time.perf_counter() - middle

    one_pass()
    profile = cProfile.Profile()
    explain_s, simulate_s = profile.runcall(one_pass)
    print(f"local:smollm2, one torch thread (load average {os.getloadavg()[0]:.1f}), {len(records)} features: "
          f"explanations {explain_s:.1f} s, simulation {simulate_s:.1f} s (under the profiler)")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
