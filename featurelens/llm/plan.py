"""``--dry-run``: what a labeling job would send and cost, before anything is spent.

Walks the same jobs the engine would run (so resumed work and cached responses are
left out exactly as they would be), counts calls and estimated input tokens, bounds the
output by each request's ``max_tokens``, and prices both with the price table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from featurelens.core.protocols import batched
from featurelens.core.store import Store
from featurelens.llm import cache
from featurelens.llm.engine import Job, estimate_tokens
from featurelens.llm.pricing import PriceTable


@dataclass
class Estimate:
    """The dry-run's answer; token counts are estimates (about 4 characters a token)."""

    llm: str
    features: int = 0
    skipped: int = 0
    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    cost_usd: float | None = 0.0

    def lines(self) -> list[str]:
        cost = ("unknown (no price for this model; add one with --prices)" if self.cost_usd is None
                else f"at most ${self.cost_usd:,.4f}")
        per = f" ({self.input_tokens // max(self.features, 1):,} per feature)" if self.features else ""
        return [
            f"features to label:   {self.features:,} ({self.skipped:,} already done)",
            f"LLM calls:           {self.calls:,} ({self.cached_calls:,} more answered from the cache)",
            f"input tokens:        ~{self.input_tokens:,}{per}",
            f"output tokens:       at most {self.max_output_tokens:,}",
            f"estimated cost:      {cost} on {self.llm}",
        ]


def estimate(store: Store, jobs: Iterable[Job], provider: str, model: str,
             prices: PriceTable | None = None, batch: bool = False) -> Estimate:
    """Count what running ``jobs`` on ``provider:model`` would send (nothing is sent)."""
    prices = prices or PriceTable.load()
    result = Estimate(f"{provider}:{model}")
    for chunk in batched(jobs, 256):
        keys = [[cache.cache_key(provider, model, r) for r in job.requests] for job in chunk]
        hits = cache.lookup(store, (k for ks in keys for k in ks))
        for job, job_keys in zip(chunk, keys):
            result.features += 1
            for request, key in zip(job.requests, job_keys):
                if key in hits:
                    result.cached_calls += 1
                    continue
                result.calls += 1
                result.input_tokens += estimate_tokens(request)
                result.max_output_tokens += request.max_tokens
    price = prices.price(provider, model)
    result.cost_usd = None if price is None else price.cost(
        result.input_tokens, result.max_output_tokens, batch=batch)
    return result
