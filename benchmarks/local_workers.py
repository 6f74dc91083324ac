"""Features per minute of ``local:smollm2``: a batch on one thread vs the defaults (one-core workers, prefix run once).

Today's prompts both times (the explanation, then the simulation's two prompts per
feature, every request sent at once as `featurelens run` does with ``batch=8``):
"one" is the path before local_workers.py (``workers=1``: the whole batch in one
thread on torch's intra-op threads; ``prefix_cache=0``: every prompt whole), "split"
the provider's defaults (one worker per core, each running torch on one core; the
shared prefix run once). ``--prefix-cache N`` gives both paths that setting, so only
the workers differ. Runs go one, split, split, one and the times are summed; wall and
this process's CPU time.
The answers must be the same: explanations as text, simulation scores to 1e-6, the
log-probs the simulation reads to 1e-4 (a continued prefix moves them by float
rounding: SmolLM2's logits reach 20-30, where float32 steps are 2e-6).

    PYTHONPATH=. .venv/bin/python benchmarks/local_workers.py [--features 3] [--prefix-cache N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from local_speed import Pipeline, _read_diff, _score_diff, first_planted

from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.providers.local.provider import LocalProvider
from featurelens.scorers.simulation import SimulationScorer


def _size(provider: LocalProvider) -> int:
    return provider.prefixes.size if provider.prefixes is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prefix-cache", type=int, default=None,
                        help="both paths' prefix_cache option (default: 0 for one, the provider's for split)")
    args = parser.parse_args()

    records = first_planted(args.features)
    explainer = TokenActivationsExplainer()
    scorer = SimulationScorer(n_activating=args.windows, n_random=args.windows, adaptive=False,
                              per_prompt=args.windows)
    same_prefix = {} if args.prefix_cache is None else {"prefix_cache": args.prefix_cache}
    one = Pipeline(LocalProvider("smollm2", batch=args.batch, workers=1, **(same_prefix or {"prefix_cache": 0})),
                   False, records, explainer, scorer)
    split = Pipeline(LocalProvider("smollm2", batch=args.batch, **same_prefix), False, records, explainer, scorer)
    one.provider._load(), split.provider._load()
    print(f"local:smollm2 on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), {len(records)} "
          f"features, batch {args.batch}; one: torch threads {torch.get_num_threads()}, prefix_cache "
          f"{_size(one.provider)}; split: {split.provider.workers} workers of one torch thread, prefix_cache "
          f"{_size(split.provider)}")
    runs: dict[str, list[dict]] = {"one": [], "split": []}
    with tqdm(total=4 * 3 * len(records), desc="requests", unit="req") as bar:
        for name, pipeline in (("one", one), ("split", split), ("split", split), ("one", one)):
            runs[name].append(pipeline.run(bar))
    a, b = runs["one"], runs["split"]
    same = sum(x == y for r in b for x, y in zip(r["texts"], a[0]["texts"]))
    score = max(_score_diff(r["scores"], a[0]["scores"]) for r in b)
    read = max(_read_diff(r["sims"], a[0]["sims"], scorer.lines.placeholder) for r in b)
    print(f"answers: identical explanations {same}/{2 * len(records)}; largest simulation score difference "
          f"{score:.1e}; largest difference of a log-prob the simulation reads {read:.1e}")
    totals = {}
    for name, results in runs.items():
        ex_w, ex_c = (sum(r["explain"][k] for r in results) for k in (0, 1))
        sim_w, sim_c = (sum(r["simulate"][k] for r in results) for k in (0, 1))
        totals[name] = (ex_w + sim_w, ex_c + sim_c, ex_w, sim_w)
        print(f"  {name:5s}: explain {ex_w:6.1f} s wall ({ex_c:6.1f} s CPU), simulate {sim_w:6.1f} s wall "
              f"({sim_c:6.1f} s CPU) over 2 runs; {60 * 2 * len(records) / (ex_w + sim_w):.2f} features per minute")
    o, s = totals["one"], totals["split"]
    print(f"ratio features per minute split / one = {o[0] / s[0]:.2f} by wall time (explain {o[2] / s[2]:.2f}, "
          f"simulate {o[3] / s[3]:.2f}), CPU time per feature {o[1] / s[1]:.2f} "
          f"(load average now {os.getloadavg()[0]:.1f})")
    assert same == 2 * len(records), "explanations differ"
    assert score < 1e-6 and read < 1e-4, f"simulation differs: score {score}, read log-prob {read}"


if __name__ == "__main__":
    main()
