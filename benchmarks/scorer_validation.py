"""Do the scorers tell a right explanation from a wrong one?

Planted features of known meaning (fires on digits, on the word 'cat', on closing
brackets; :mod:`featurelens.testing.planted_features`) are scored with their own
explanation and with the other features' explanations (shuffled).

1. Faithful simulator (rule-based, every mode and scorer): the method itself must
   separate right from wrong almost perfectly, or the scorer is broken.
2. The embedded SmolLM2-135M-Instruct as the simulator (``local:smollm2``, prompt
   log-probabilities, one forward pass per prompt): how well a tiny local model
   separates them, recorded honestly whatever it shows.
3. The embedding scorer (all-MiniLM-L6-v2, no LLM) on the same features, as a
   reference for what a small local model can tell apart.
4. SmolLM2 as the explainer: its explanations of the same features, judged by the
   faithful simulator (simulation) and by the embedding scorer, next to the planted
   right explanations.

Separation is reported as pairwise accuracy (share of (feature, wrong explanation)
pairs where the right explanation scores higher) and AUROC over all right vs wrong
scores, with mean scores for both.

    .venv/bin/python benchmarks/scorer_validation.py [--seeds 2] [--windows 10] [--parts 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from statistics import mean

from featurelens.scorers import DetectionScorer, FuzzingScorer, SimulationScorer
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

CAPS = {"prompt-logprobs": frozenset({"prompt_logprobs"}), "output-logprobs": frozenset({"output_logprobs"}),
        "json": frozenset()}


def auroc(right: list[float], wrong: list[float]) -> float:
    """Probability that a random right explanation outscores a random wrong one (ties: half)."""
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def separation(results: dict[tuple[int, str], float | None]) -> dict[str, float]:
    """Pairwise accuracy, AUROC and means; undefined scores count as 0 correlation."""
    names = list(PLANTED)
    right, wrong, pairs, won = [], [], 0, 0
    features = sorted({f for f, _ in results})
    for f in features:
        own = names[f % len(names)]
        r = results[(f, own)] or 0.0
        right.append(r)
        for other in names:
            if other != own:
                w = results[(f, other)] or 0.0
                wrong.append(w)
                pairs += 1
                won += r > w
    return {"pairwise": won / pairs, "auroc": auroc(right, wrong), "right": mean(right), "wrong": mean(wrong)}


def score_all(scorer, records, simulator, caps) -> tuple[dict[tuple[int, str], float | None], dict[str, float]]:
    results: dict[tuple[int, str], float | None] = {}
    extra = {"seconds": 0.0, "missing": 0, "positions": 0, "parse_failures": 0}
    for index, record in enumerate(records):
        for name, (_, text) in PLANTED.items():
            start = time.perf_counter()
            requests = scorer.requests(record, text, caps)
            responses = [asyncio.run(simulator.complete(r)) for r in requests]
            result = scorer.score(record, text, responses, caps)
            extra["seconds"] += time.perf_counter() - start
            extra["missing"] += result.metrics.get("positions_without_digit_probs", 0)
            extra["positions"] += sum(len(w["true"]) for w in result.details.get("windows", []) if "true" in w)
            extra["parse_failures"] += result.n_parse_failures
            results[(index, name)] = result.score
    return results, extra


def records_for(seeds: int, windows: int) -> list:
    out = []
    for seed in range(seeds):
        out += planted_records(length=32, n_top=10, n_quantile=windows, n_random=windows, seed=seed,
                               dictionary_id=f"planted-{seed}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="planted feature sets (3 features each)")
    parser.add_argument("--windows", type=int, default=10, help="activating and random windows each, for SmolLM2")
    parser.add_argument("--top-logprobs", type=int, default=100, help="alternatives read at each position")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (comma-separated)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if "1" in parts:
        rule_part(args)
    if "2" in parts:
        local_part(args)
    if "3" in parts:
        embedding_part(args)
    if "4" in parts:
        explainer_part(args)


def explainer_part(args: argparse.Namespace) -> None:
    from featurelens.labelers.explainers import (
        HighlightedExplainer,
        TokenActivationsExplainer,
    )
    from featurelens.llm.providers.local.provider import LocalProvider
    from featurelens.scorers.embedding import EmbeddingScorer

    provider = LocalProvider("smollm2")
    records = records_for(args.seeds, 20)
    judge_sim = SimulationScorer(n_activating=20, n_random=20)
    judge_emb = EmbeddingScorer(n_activating=20, n_random=20)
    faithful = RuleSimulator(capabilities=frozenset({"prompt_logprobs"}))
    names = list(PLANTED)
    print(f"\n4. local:smollm2 as the explainer, {len(records)} features; judged by the faithful simulator "
          "(correlation) and the embedding scorer (AUROC)")
    for explainer in (TokenActivationsExplainer(), HighlightedExplainer()):
        sims, embs, seconds = [], [], 0.0
        for index, record in enumerate(records):
            start = time.perf_counter()
            responses = [asyncio.run(provider.complete(r)) for r in explainer.requests(record)]
            seconds += time.perf_counter() - start
            try:
                text = explainer.parse(record, responses)
            except ValueError as error:
                print(f"  {explainer.name} feature {index} ({names[index % 3]}): unusable answer ({error})")
                sims.append(0.0)
                embs.append(0.5)
                continue
            requests = judge_sim.requests(record, text, faithful.capabilities)
            sim = judge_sim.score(record, text, [faithful.answer(r) for r in requests], faithful.capabilities)
            emb = judge_emb.score(record, text, [])
            sims.append(sim.score or 0.0)
            embs.append(emb.score if emb.score is not None else 0.5)
            print(f"  {explainer.name} feature {index} ({names[index % 3]}): {text!r} -> simulation "
                  f"{sims[-1]:+.2f}, embedding {embs[-1]:.2f}")
        print(f"{explainer.name}: mean faithful-simulation score {mean(sims):+.3f}, mean embedding AUROC "
              f"{mean(embs):.3f}; {seconds / len(records):.1f} s per explanation")


def embedding_part(args: argparse.Namespace) -> None:
    from featurelens.scorers.embedding import EmbeddingScorer

    windows = 2 * args.windows
    records = records_for(args.seeds, windows)
    print(f"\n3. embedding scorer (all-MiniLM-L6-v2, no LLM), {len(records)} features, {windows} + {windows} windows")
    results, extra = score_all(EmbeddingScorer(n_activating=windows, n_random=windows), records, RuleSimulator(),
                               frozenset())
    s = separation(results)
    print(f"embedding AUROC score: right {s['right']:.3f}, wrong {s['wrong']:.3f}, pairwise accuracy "
          f"{s['pairwise']:.2f}, AUROC {s['auroc']:.2f}; {extra['seconds'] / len(results):.1f} s per score")


def rule_part(args: argparse.Namespace) -> None:
    print("1. faithful rule-based simulator, 50 + 50 windows of 32 tokens per feature")
    print(f"{'scorer':<12}{'mode':<17}{'right':>7}{'wrong':>7}{'pairwise':>10}{'AUROC':>7}")
    records = records_for(args.seeds, 50)
    for scorer in (SimulationScorer(), DetectionScorer(), FuzzingScorer()):
        modes = CAPS if scorer.name == "simulation" else {"json": frozenset()}
        for mode, caps in modes.items():
            results, _ = score_all(scorer, records, RuleSimulator(capabilities=caps), caps)
            s = separation(results)
            print(f"{scorer.name:<12}{mode:<17}{s['right']:>7.3f}{s['wrong']:>7.3f}{s['pairwise']:>10.2f}{s['auroc']:>7.2f}")


def local_part(args: argparse.Namespace) -> None:
    from featurelens.llm.providers.local.provider import LocalProvider

    provider = LocalProvider("smollm2")
    records = records_for(args.seeds, args.windows)
    scorer = SimulationScorer(n_activating=args.windows, n_random=args.windows, per_prompt=2 * args.windows,
                              top_logprobs=args.top_logprobs)
    print(f"\n2. local:smollm2 simulator (prompt log-probs, top {args.top_logprobs}), {len(records)} features, "
          f"{args.windows} + {args.windows} windows of 32 tokens, right vs shuffled explanations")
    results, extra = score_all(scorer, records, provider, provider.capabilities)
    names = list(PLANTED)
    for (f, name), value in sorted(results.items()):
        own = names[f % len(names)]
        tag = "right" if name == own else "wrong"
        print(f"  feature {f} ({own:<7}) explanation {PLANTED[name][1]!r:<22} {tag}: "
              f"{'undefined' if value is None else f'{value:+.3f}'}")
    s = separation(results)
    print(f"SmolLM2: right {s['right']:+.3f}, wrong {s['wrong']:+.3f}, pairwise accuracy {s['pairwise']:.2f}, "
          f"AUROC {s['auroc']:.2f}; positions without a digit in the top {args.top_logprobs}: "
          f"{extra['missing']}/{extra['positions']}; parse failures {extra['parse_failures']}; "
          f"{extra['seconds'] / len(results):.1f} s per score on this machine")


if __name__ == "__main__":
    main()
