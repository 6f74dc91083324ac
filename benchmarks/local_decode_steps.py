"""Where a labelled feature's time goes with ``local:smollm2``: prompt tokens vs decode steps.

What `featurelens run` asks of the local model per feature: one explanation (a prompt of
about 600 SmolLM2 tokens, then up to 32 greedy decode steps) and one simulation (two
prompts of about 800 tokens, prompt log-probs, no decoding). This script measures, on the
same requests and weights:

- prompt: ms per prompt token of the explanation prompts (their forward pass alone, as
  ``generate`` runs it) and of the simulation prompts (the provider's whole request);
- decode: ms per decode step of the explanations, one at a time through ``generate``
  (today's ``batch=1`` path), one at a time through :mod:`featurelens.llm.providers.local.decode`
  (cache grown in place), and all N rows decoding together (one step serves N rows, so its
  time is divided by the rows it served);

in the order generate, alone, together, together, alone, generate (times summed, so load
drift hits all three), and checks the answers are the same token for token. It ends with
each part's share of a feature's time, one at a time and with N rows decoded together.

    PYTHONPATH=. .venv/bin/python benchmarks/local_decode_steps.py [--features 4]
"""

from __future__ import annotations

import argparse
import os
import time
from functools import lru_cache

import torch
from local_speed import _cpu, first_planted
from tqdm import tqdm

from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.providers.local.decode import greedy, prefill
from featurelens.llm.providers.local.provider import LocalProvider
from featurelens.scorers.simulation import SimulationScorer


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=4, help="explanations decoded together (N)")
    parser.add_argument("--windows", type=int, default=10, help="activating (and random) windows simulated")
    args = parser.parse_args()

    records = first_planted(args.features)
    provider = LocalProvider("smollm2")
    tokenizer, model = provider._load()
    explain = [r for record in records for r in TokenActivationsExplainer().requests(record)]
    scorer = SimulationScorer(n_activating=args.windows, n_random=args.windows, adaptive=False,
                              per_prompt=args.windows)
    simulate = scorer.requests(records[0], "the feature", provider.capabilities)
    rows = [provider._prompt_ids(tokenizer, r)[0].tolist() for r in explain]
    decode = lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))
    print(f"local:smollm2 on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), torch threads "
          f"{torch.get_num_threads()}; {len(rows)} explanation prompts of {min(map(len, rows))}-"
          f"{max(map(len, rows))} tokens, {len(simulate)} simulation prompts per feature")

    paths = {
        "generate": lambda: [(a.text, a.output_tokens) for a in map(provider._complete_unlocked, explain)],
        "alone": lambda: [(a[0][0], len(a[0][1])) for a in
                          (greedy(tokenizer, model, [row], [r], decode) for row, r in zip(rows, explain))],
        "together": lambda: [(a[0], len(a[1])) for a in greedy(tokenizer, model, rows, explain, decode)],
    }
    wall = {name: 0.0 for name in paths}
    cpu = dict(wall)
    prompt_wall = prompt_cpu = sim_wall = 0.0
    answers: dict[str, list[tuple[str, int]]] = {}
    order = ["generate", "alone", "together", "together", "alone", "generate"]
    with tqdm(total=len(order) + 2, desc="passes", unit="pass") as bar:
        for name in order:
            answers[name], w, c = _timed(paths[name])
            wall[name] += w
            cpu[name] += c
            bar.update(1)
        for _ in range(2):  # the prompts alone, for the decode steps' share
            _, w, c = _timed(lambda: [prefill(model, row) for row in rows])
            prompt_wall, prompt_cpu = prompt_wall + w / 2, prompt_cpu + c / 2
            _, w, _ = _timed(lambda: [provider._complete_unlocked(r) for r in simulate])
            sim_wall += w / 2
            bar.update(1)
    same = answers["generate"] == answers["alone"] == answers["together"]
    tokens = sum(map(len, rows))
    sim_tokens = sum(len(provider._prompt_ids(tokenizer, r)[0]) for r in simulate)
    out_tokens = [n for _, n in answers["generate"]]
    steps = sum(out_tokens)
    print(f"answers the same token for token on all three paths: {same}; decode steps per explanation "
          f"{out_tokens}")
    print(f"prompt: explanation {1000 * prompt_wall / tokens:.2f} ms per token ({1000 * prompt_cpu / tokens:.2f} "
          f"ms CPU), simulation {1000 * sim_wall / sim_tokens:.2f} ms per token (whole request)")
    per_step = {}
    for name in paths:
        w = (wall[name] / 2 - prompt_wall) / steps
        c = (cpu[name] / 2 - prompt_cpu) / steps
        per_step[name] = w
        rows_note = f" ({len(rows)} rows a step)" if name == "together" else ""
        print(f"decode {name:8}: {1000 * w:7.1f} ms per row-step wall, {1000 * c:7.1f} ms CPU{rows_note}; "
              f"explanations {wall[name] / 2:.1f} s")
    print(f"ratio explanations per minute together / generate = {wall['generate'] / wall['together']:.2f}, "
          f"alone / generate = {wall['generate'] / wall['alone']:.2f}")
    feature_prompt = prompt_wall / len(rows) + sim_wall
    for name in ("generate", "together"):
        decoding = per_step[name] * steps / len(rows)
        total = feature_prompt + decoding
        print(f"per feature ({name}): {total:.2f} s = explanation prompt {prompt_wall / len(rows):.2f} s "
              f"({100 * prompt_wall / len(rows) / total:.0f} %), decode {decoding:.2f} s "
              f"({100 * decoding / total:.0f} %), simulation prompts {sim_wall:.2f} s "
              f"({100 * sim_wall / total:.0f} %)")
    print(f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
