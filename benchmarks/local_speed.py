"""Features per minute of ``local:smollm2``: commit 4cae3c2's path vs today's default.

What `featurelens run` asks of the local model for each labelled feature: one
explanation (token-activations explainer, one line, at most 32 tokens) and one
simulation score (prompt log-probs over 10 activating + 10 random windows of 32
tokens, two prompts). Planted features stand in for a dictionary's.

- old: 4cae3c2's behaviour: one request at a time, every prompt run whole, log-probs at
  every prompt position (``prefix_cache=0``, requests without ``prompt_logprobs_after``);
- new: the provider's defaults: log-probs only after the tab, the shared prefix run once
  per run (the LRU is emptied before each run, so every run pays for its own prefixes;
  ``--prefix-cache 0`` turns it off), and with ``--batch N`` requests sent at once, up
  to N explanations decoded together (benchmarks/local_decode_steps.py) and each batch
  split across one-core workers (``--workers``, default one per core;
  benchmarks/local_workers.py).

Each path has its own copy of the weights. Runs go old, new, new, old and the times are
summed, so load drift on a shared machine hits both; wall time and this process's CPU
time are both reported. Answers are compared: explanations must be the same text,
simulation scores the same to 1e-4 (and the log-probs the simulation reads are shown).
``--bf16`` adds one run of the new path in bfloat16 and says how far its answers move.
``--old-prompts`` gives the old path 4cae3c2's prompts as well (the token-table
explanation prompt over 32-token windows, OpenAI's ``tok<TAB>unknown`` simulation lines
over 32-token windows) and the new path today's defaults (compact explanation, dense
lines over 16-token windows): what a user of ``featurelens run`` sees per feature. The
prompts differ, so the answers are not compared then.

    PYTHONPATH=. .venv/bin/python benchmarks/local_speed.py [--features 3] [--bf16] [--prefix-cache 8] [--batch 8] [--workers 2] [--old-prompts]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import threading
import time

import torch
from tqdm import tqdm

from featurelens.core.host.protocols import LLMRequest, ParseError
from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.providers.local.provider import LocalProvider
from featurelens.scorers.simulation import SimulationScorer
from featurelens.scorers.simulation_parse import target_positions
from featurelens.testing.planted_features import planted_records


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _answer(provider: LocalProvider, requests: list[LLMRequest], bar: tqdm) -> list:
    async def one(request: LLMRequest):
        answer = await provider.complete(request)
        bar.update(1)
        return answer

    async def go():
        if provider.batch > 1:  # all sent at once, as the engine does with concurrency >= batch
            return await asyncio.gather(*map(one, requests))
        return [await one(request) for request in requests]  # one at a time

    return asyncio.run(go())


def _old(requests: list[LLMRequest]) -> list[LLMRequest]:
    return [LLMRequest(**{**r.__dict__, "prompt_logprobs_after": None}) for r in requests]


class Pipeline:
    """Explain then simulate every record with one provider; times each phase."""

    def __init__(self, provider: LocalProvider, old: bool, records: list, explainer, scorer):
        self.provider, self.old = provider, old
        self.records, self.explainer, self.scorer = records, explainer, scorer

    def run(self, bar: tqdm) -> dict:
        if self.provider.prefixes is not None:
            self.provider.prefixes._entries.clear()
        wall, cpu = time.perf_counter(), _cpu()
        explain = [r for record in self.records for r in self.explainer.requests(record)]
        answers = _answer(self.provider, _old(explain) if self.old else explain, bar)
        texts = []
        for record, answer in zip(self.records, answers):
            try:
                texts.append(self.explainer.parse(record, [answer]))
            except ParseError:
                texts.append(answer.text or "the feature")
        t_explain = (time.perf_counter() - wall, _cpu() - cpu)
        wall, cpu = time.perf_counter(), _cpu()
        caps = self.provider.capabilities
        per_feature = [self.scorer.requests(record, text, caps) for record, text in zip(self.records, texts)]
        flat = [r for requests in per_feature for r in requests]
        sims = _answer(self.provider, _old(flat) if self.old else flat, bar)
        scores, at = [], 0
        for record, text, requests in zip(self.records, texts, per_feature):
            scores.append(self.scorer.score(record, text, sims[at:at + len(requests)], caps).score)
            at += len(requests)
        t_sim = (time.perf_counter() - wall, _cpu() - cpu)
        return {"texts": [a.text for a in answers], "scores": scores, "sims": sims,
                "explain": t_explain, "simulate": t_sim, "n_requests": len(explain) + len(flat)}


def _read_diff(a: list, b: list, placeholder: str) -> float:
    """Largest difference of the log-probs the simulation reads (alternatives at its positions)."""
    worst = 0.0
    for x, y in zip(a, b):
        for j in target_positions(y.prompt_logprobs, placeholder):
            for token, value in y.prompt_logprobs[j].top.items():
                other = x.prompt_logprobs[j].top.get(token)
                worst = max(worst, float("inf") if other is None else abs(other - value))
    return worst


def _score_diff(a: list, b: list) -> float:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None or y is not None]
    if any((x is None) != (y is None) for x, y in pairs):
        return float("inf")
    return max((abs(x - y) for x, y in pairs), default=0.0)


def _worker_threads() -> int:
    found: list[int] = []
    thread = threading.Thread(target=lambda: found.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return found[0]


def first_planted(n: int) -> list:
    """The first ``n`` planted features of seeds 0, 1, ... (32-token windows): the same
    features in every local-model benchmark."""
    records, seed = [], 0
    while len(records) < n:
        records += planted_records(length=32, seed=seed)
        seed += 1
    return records[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--windows", type=int, default=10, help="activating (and random) windows simulated")
    parser.add_argument("--bf16", action="store_true", help="also one run of the new path in bfloat16")
    parser.add_argument("--prefix-cache", type=int, default=None,
                        help="the new path's prefix_cache option (default: the provider's)")
    parser.add_argument("--batch", type=int, default=1,
                        help="the new path's batch option (requests then sent at once)")
    parser.add_argument("--workers", type=int, default=None,
                        help="the new path's workers option (default: the provider's, one per core)")
    parser.add_argument("--old-prompts", action="store_true",
                        help="the old path also sends 4cae3c2's prompts (answers then not compared)")
    args = parser.parse_args()

    records = first_planted(args.features)
    explainer = TokenActivationsExplainer()
    scorer = SimulationScorer(n_activating=args.windows, n_random=args.windows, adaptive=False,
                              per_prompt=args.windows)  # two prompts per feature
    old_explainer, old_scorer = explainer, scorer
    if args.old_prompts:
        old_explainer = TokenActivationsExplainer(style="table")
        old_scorer = SimulationScorer(n_activating=args.windows, n_random=args.windows, adaptive=False,
                                      per_prompt=args.windows, window=32, line_format="openai")
    old = Pipeline(LocalProvider("smollm2", prefix_cache=0, batch=1, workers=1), True, records, old_explainer, old_scorer)
    options = {k: v for k, v in (("prefix_cache", args.prefix_cache), ("workers", args.workers)) if v is not None}
    new = Pipeline(LocalProvider("smollm2", batch=args.batch, **options), False, records,
                   explainer, scorer)
    old.provider._load(), new.provider._load()
    print(f"local:smollm2 on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
          f"{len(records)} features, explanation + simulation ({args.windows} + {args.windows} windows); "
          f"torch threads: main {torch.get_num_threads()}, worker thread {_worker_threads()}; "
          f"new path: batch {new.provider.batch}, workers {new.provider.workers}, "
          f"prefix_cache {new.provider.prefixes.size if new.provider.prefixes else 0}")
    order = [old, new, new, old]
    runs: dict[int, list[dict]] = {id(old): [], id(new): []}
    with tqdm(total=len(order) * 3 * len(records), desc="requests", unit="req") as bar:
        for pipeline in order:
            runs[id(pipeline)].append(pipeline.run(bar))
    a, b = runs[id(old)], runs[id(new)]
    same_text = sum(x == y for x, y in zip(a[0]["texts"], b[0]["texts"]))
    score_diff = _score_diff(a[0]["scores"], b[0]["scores"])
    if args.old_prompts:
        print("answers: not compared (the old path sent 4cae3c2's prompts); explanations old "
              f"{a[0]['texts']!r}, new {b[0]['texts']!r}")
    else:
        read_diff = _read_diff(b[0]["sims"], a[0]["sims"], scorer.lines.placeholder)
        print(f"answers: identical explanations {same_text}/{len(records)}; largest simulation score "
              f"difference {score_diff:.1e}; largest difference of a log-prob the simulation reads "
              f"{read_diff:.1e}")
    totals = {}
    for name, results in (("old", a), ("new", b)):
        ex_w = sum(r["explain"][0] for r in results)
        ex_c = sum(r["explain"][1] for r in results)
        sim_w = sum(r["simulate"][0] for r in results)
        sim_c = sum(r["simulate"][1] for r in results)
        totals[name] = (ex_w + sim_w, ex_c + sim_c)
        fpm = 60 * len(results) * len(records) / (ex_w + sim_w)
        print(f"  {name}: explain {ex_w:6.1f} s wall ({ex_c:6.1f} s CPU), simulate {sim_w:6.1f} s wall "
              f"({sim_c:6.1f} s CPU) over 2 runs; {fpm:.2f} features per minute")
    wall = totals["old"][0] / totals["new"][0]
    cpu = totals["old"][1] / totals["new"][1]
    print(f"ratio features per minute new / old = {wall:.2f} by wall time, {cpu:.2f} by CPU time "
          f"(load average now {os.getloadavg()[0]:.1f})")
    if not args.old_prompts:
        assert same_text == len(records), "explanations differ"
        assert score_diff < 1e-4, f"simulation scores differ by {score_diff}"
    if args.bf16:
        half = Pipeline(LocalProvider("smollm2", dtype="bfloat16", batch=args.batch, **options), False,
                        records, explainer, scorer)
        with tqdm(total=3 * len(records), desc="bf16 requests", unit="req") as bar:
            h = half.run(bar)
        b_wall = (b[0]["explain"][0] + b[0]["simulate"][0] + b[1]["explain"][0] + b[1]["simulate"][0]) / 2
        h_wall = h["explain"][0] + h["simulate"][0]
        same = sum(x == y for x, y in zip(h["texts"], b[0]["texts"]))
        print(f"bf16 (new path): {h_wall:.1f} s wall vs float32 {b_wall:.1f} s (mean of its runs): "
              f"ratio {b_wall / h_wall:.2f}; identical explanations {same}/{len(records)}; largest "
              f"simulation score difference {_score_diff(h['scores'], b[0]['scores']):.2f}; largest "
              f"difference of a read log-prob {_read_diff(h['sims'], b[0]['sims'], scorer.lines.placeholder):.2f}")


if __name__ == "__main__":
    main()
