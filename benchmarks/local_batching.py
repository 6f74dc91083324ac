"""Features per minute with the local SmolLM2, one request at a time vs in batches.

What `featurelens run` asks of the local model for each labelled feature: one
explanation (token-activations explainer, one line, at most 32 tokens) and one
simulation score (prompt log-probabilities over 10 activating + 10 random windows of
32 tokens). Planted features stand in for a dictionary's. The same requests are
answered by ``local:smollm2`` with ``batch=1`` (today's path: one at a time) and with
``batch=N`` (all sent at once, as the engine does with concurrency >= N); the two
phases are interleaved (explain alone, explain batched, simulate alone, simulate
batched) and each is run in the order alone, batched, batched, alone (times summed), so
a change in machine load hits both. Answers are compared: explanations
must be the same text, simulation scores the same to 1e-4. ``--direct`` also times the
batched explanations called in this thread (no micro-batcher thread, no event loop), to
tell the batcher's thread apart from the batched computation.

    PYTHONPATH=. .venv/bin/python benchmarks/local_batching.py [--features 8] [--batch 8] [--direct]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from featurelens.core.host.protocols import ParseError
from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.providers.local.provider import LocalProvider
from featurelens.scorers.simulation import SimulationScorer
from featurelens.testing.planted_features import planted_records


def answer(provider: LocalProvider, requests: list) -> tuple[list, float]:
    """Send every request at once (the batcher gathers them; batch=1 answers in turn)."""
    async def go():
        return await asyncio.gather(*(provider.complete(r) for r in requests))

    start = time.perf_counter()
    responses = asyncio.run(go())
    return responses, time.perf_counter() - start


def abba(alone: LocalProvider, batched: LocalProvider, requests: list) -> tuple[list, list, float, float]:
    """Answers and summed times of alone, batched, batched, alone (load drift cancels)."""
    first, t1 = answer(alone, requests)
    second, t2 = answer(batched, requests)
    sizes = list(batched._batcher.batch_sizes)
    _, t3 = answer(batched, requests)
    _, t4 = answer(alone, requests)
    batched._batcher.batch_sizes[:] = sizes
    return first, second, t1 + t4, t2 + t3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--windows", type=int, default=10, help="activating (and random) windows simulated")
    parser.add_argument("--direct", action="store_true",
                        help="also time the batched explanations called in this thread")
    args = parser.parse_args()

    records = []
    seed = 0
    while len(records) < args.features:
        records += planted_records(length=32, seed=seed)
        seed += 1
    records = records[:args.features]
    explainer = TokenActivationsExplainer()
    scorer = SimulationScorer(n_activating=args.windows, n_random=args.windows)
    alone = LocalProvider("smollm2", batch=1)
    batched = LocalProvider("smollm2", batch=args.batch)
    batched._loaded = alone._load()  # one copy of the weights, the same numbers
    print(f"local:smollm2 on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
          f"{len(records)} features, explanation + simulation ({args.windows} + {args.windows} windows)")

    explain = [r for record in records for r in explainer.requests(record)]
    ex_alone, ex_batched, t_ex_alone, t_ex_batched = abba(alone, batched, explain)
    texts = []
    for record, a, b in zip(records, ex_alone, ex_batched):
        assert a.text == b.text, f"explanations differ: {a.text!r} vs {b.text!r}"
        try:
            texts.append(explainer.parse(record, [a]))
        except ParseError:
            texts.append(a.text or "the feature")
    if args.direct:  # this thread, the batcher's, the batcher's, this thread
        t_direct = t_thread = 0.0
        for where in ("direct", "thread", "thread", "direct"):
            start = time.perf_counter()
            got = batched._complete_batch(explain) if where == "direct" else answer(batched, explain)[0]
            took = time.perf_counter() - start
            assert [a.text for a in got] == [a.text for a in ex_alone]
            t_direct, t_thread = (t_direct + took, t_thread) if where == "direct" else (t_direct, t_thread + took)
        print(f"  explain : batched in this thread {t_direct:7.1f} s, through the batcher's thread "
              f"{t_thread:7.1f} s; ratio {t_direct / t_thread:.2f}")
    print(f"  explain : alone {t_ex_alone:7.1f} s, batched {t_ex_batched:7.1f} s "
          f"(batches {batched._batcher.batch_sizes}); ratio {t_ex_alone / t_ex_batched:.2f}; "
          f"identical explanations {len(texts)}/{len(records)}")

    caps = alone.capabilities
    per_feature = [scorer.requests(record, text, caps) for record, text in zip(records, texts)]
    flat = [r for requests in per_feature for r in requests]
    batched._batcher.batch_sizes.clear()
    sim_alone, sim_batched, t_sim_alone, t_sim_batched = abba(alone, batched, flat)
    worst, at = 0.0, 0
    for record, text, requests in zip(records, texts, per_feature):
        a = scorer.score(record, text, sim_alone[at:at + len(requests)], caps)
        b = scorer.score(record, text, sim_batched[at:at + len(requests)], caps)
        at += len(requests)
        assert (a.score is None) == (b.score is None)
        if a.score is not None:
            worst = max(worst, abs(a.score - b.score))
    assert worst < 1e-4, f"simulation scores differ by {worst}"
    print(f"  simulate: alone {t_sim_alone:7.1f} s, batched {t_sim_batched:7.1f} s "
          f"(batches {batched._batcher.batch_sizes}); ratio {t_sim_alone / t_sim_batched:.2f}; "
          f"largest score difference {worst:.1e}")
    total_alone, total_batched = t_ex_alone + t_sim_alone, t_ex_batched + t_sim_batched
    print(f"  features per minute: alone {60 * len(records) / total_alone:.2f}, "
          f"batched {60 * len(records) / total_batched:.2f}")
    print(f"ratio features per minute batched / alone = {total_alone / total_batched:.2f} "
          f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
