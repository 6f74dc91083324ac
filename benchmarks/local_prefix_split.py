"""A prompt run whole against its suffix after a stored prefix, for ``local:smollm2``.

Why: the shared prefix run once (``prefix_cache``) pays only if the suffix costs no more
than its share of the prompt's tokens. This times, interleaved and repeated, today's
default prompts (an explanation's prefill as ``local_decode.prefill`` runs it, and a
simulation prompt's pass with prompt log-probs as the provider runs it) whole and
continued from their stored prefix: the declared shared prefix, and for the second
simulation prompt of a feature also the longest prefix it shares with the first (the
explanation line). CPU time of this process and wall time; the ratio is measured here,
within one run.

    PYTHONPATH=. .venv/bin/python benchmarks/local_prefix_split.py [--reps 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from functools import lru_cache

import torch

from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.providers.local import decode as local_decode
from featurelens.llm.providers.local import prefix as local_prefix
from featurelens.llm.providers.local.provider import LocalProvider
from featurelens.scorers.simulation import SimulationScorer
from featurelens.testing.planted_features import planted_records

EXPLANATION = "numbers and digits in lists of prices, dates and counts written as numerals"


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one whole and one suffix pass of each")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 measures work with less noise on shared cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    record = planted_records(length=32, seed=0)[0]
    provider = LocalProvider("smollm2", prefix_cache=4, batch=1)
    tokenizer, model = provider._load()
    decode = lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))
    explain = TokenActivationsExplainer().requests(record)[0]
    sims = SimulationScorer(n_activating=10, n_random=10, adaptive=False, per_prompt=10).requests(
        record, EXPLANATION, provider.capabilities)
    cases = {}
    e_ids = provider._prompt_ids(tokenizer, explain)
    e_row = e_ids[0].tolist()
    e_pre = provider._prefix(tokenizer, model, explain, e_ids)
    cases["explain prefill"] = (len(e_row), len(e_pre.ids),
                                lambda: local_decode.prefill(model, e_row, None),
                                lambda: local_decode.prefill(model, e_row, e_pre))
    s_ids = [provider._prompt_ids(tokenizer, r) for r in sims]
    s_pre = provider._prefix(tokenizer, model, sims[0], s_ids[0])
    rows = [ids[0].tolist() for ids in s_ids]
    n = local_prefix.common_length(rows[0], rows[1])
    s_feat = provider.prefixes.get(model, rows[1][:n])
    cases["simulation, declared prefix"] = (
        len(rows[0]), len(s_pre.ids),
        lambda: provider._prompt_logprobs(model, s_ids[0], sims[0], decode, None),
        lambda: provider._prompt_logprobs(model, s_ids[0], sims[0], decode, s_pre))
    cases["simulation 2nd, feature prefix"] = (
        len(rows[1]), n,
        lambda: provider._prompt_logprobs(model, s_ids[1], sims[1], decode, None),
        lambda: provider._prompt_logprobs(model, s_ids[1], sims[1], decode, s_feat))
    print(f"local:smollm2 on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), torch threads "
          f"{torch.get_num_threads()}, {args.reps} repetitions interleaved")
    for name, (total, prefix, whole, suffix) in cases.items():
        whole(), suffix()  # warm
        w, s = [0.0, 0.0], [0.0, 0.0]
        for rep in range(args.reps):
            for fn, acc in ((whole, w), (suffix, s)) if rep % 2 == 0 else ((suffix, s), (whole, w)):
                dw, dc = _timed(fn)
                acc[0] += dw
                acc[1] += dc
        share = (total - prefix) / total
        print(f"{name:32s}: {total} tokens, prefix {prefix}; whole {1000 * w[1] / args.reps:7.1f} ms CPU "
              f"({1000 * w[0] / args.reps:6.1f} wall), suffix {1000 * s[1] / args.reps:7.1f} ms CPU "
              f"({1000 * s[0] / args.reps:6.1f} wall); suffix / whole {s[1] / w[1]:.2f} by CPU, "
              f"{s[0] / w[0]:.2f} by wall; its share of tokens {share:.2f}")
        if args.profile:
            for label, fn in (("whole", whole), ("suffix", suffix)):
                profile = cProfile.Profile()
                profile.runcall(fn)
                print(f"--- {name}, {label}")
                pstats.Stats(profile).sort_stats("tottime").print_stats(8)
    print(f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
