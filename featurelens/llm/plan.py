"""``--dry-run``: what a labeling job would send, cost and take, before anything is spent.

Walks the same jobs the engine would run (so resumed work and cached responses are
left out exactly as they would be), counts each request with :func:`tally`: input
tokens with the provider's declared counter (:mod:`featurelens.llm.token_count`), the
part its prompt cache serves, the output bounded by each request's ``max_tokens``;
prices them with the price table, and turns calls and tokens into an expected wall
time from the concurrency, the rate limits and the provider's latency (the median in
this store's ``llm_calls``, or an assumed one). Large selections are planned from a
sample (:mod:`featurelens.llm.plan_sample`). ``featurelens estimate``
(:mod:`featurelens.jobs.cost_estimate`) counts with the same :func:`tally`, so the two
agree on the same job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from featurelens.core.host.protocols import LLMRequest, batched
from featurelens.core.store.database import Store
from featurelens.llm import cache
from featurelens.llm.engine import Job
from featurelens.llm.pricing import PriceTable
from featurelens.llm.providers import provider_info
from featurelens.llm.token_count import TokenCounter, counter_for

#: Seconds a call is assumed to take when the store has no call to this model yet.
ASSUMED_LATENCY_S = 2.0


@dataclass
class Estimate:
    """The dry-run's answer (see the module docstring for how each number is had)."""

    llm: str
    features: int = 0
    skipped: int = 0
    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0  #: of ``input_tokens``, served by the provider's prompt cache
    max_output_tokens: int = 0
    cost_usd: float | None = 0.0
    input_cost_usd: float | None = 0.0
    counted_with: str = ""
    sampled: tuple[int, int] | None = None  #: (features planned, features selected)
    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    latency_s: float = ASSUMED_LATENCY_S
    latency_source: str = "assumed"

    def wall_seconds(self) -> float:
        """Expected wall time: the slowest of concurrency / latency and the rate limits."""
        seconds = self.calls * self.latency_s / max(self.concurrency, 1)
        if self.rpm:
            seconds = max(seconds, self.calls / self.rpm * 60)
        if self.tpm:
            seconds = max(seconds, (self.input_tokens + self.max_output_tokens) / self.tpm * 60)
        return seconds

    def lines(self) -> list[str]:
        if self.cost_usd is None:
            cost = "unknown (no price for this model; add one with --prices)"
        else:
            cost = (f"${self.cost_usd:,.4f} (${self.input_cost_usd:,.4f} input + at most "
                    f"${self.cost_usd - self.input_cost_usd:,.4f} output)")
        per = f" ({self.input_tokens // max(self.features, 1):,} per feature)" if self.features else ""
        how = self.counted_with
        if self.sampled is not None:
            how += f"; planned on {self.sampled[0]:,} of {self.sampled[1]:,} features and scaled"
        limits = "".join(f", {name} {value:,.0f}" for name, value in (("rpm", self.rpm), ("tpm", self.tpm))
                         if value)
        return [
            f"features to label:   {self.features:,} ({self.skipped:,} already done)",
            f"LLM calls:           {self.calls:,} ({self.cached_calls:,} more answered from the cache)",
            f"input tokens:        {self.input_tokens:,}{per}, counted with {how}",
            f"output tokens:       at most {self.max_output_tokens:,}",
            f"estimated cost:      {cost} on {self.llm}",
            f"expected wall time:  {_duration(self.wall_seconds())} at concurrency "
            f"{self.concurrency}{limits}, {self.latency_s:.2f} s a call ({self.latency_source})",
        ]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def typical_latency(store: Store, provider: str, model: str) -> tuple[float, str]:
    """Median seconds of this model's answered calls in the store, else the assumption."""
    row = store.execute("SELECT median(latency_s), count(*) FROM llm_calls WHERE provider = ? "
                        "AND model = ? AND status = 'ok' AND latency_s IS NOT NULL", [provider, model])
    if row and row[0][1]:
        return float(row[0][0]), f"median of {row[0][1]:,} calls in this store"
    return ASSUMED_LATENCY_S, "assumed: no call to this model in this store yet"


def output_bound(provider: str, request: LLMRequest) -> int:
    """The most output tokens ``request`` can bill on ``provider``: its ``max_tokens``, or the
    provider's declared floor (``ProviderInfo.min_output_tokens``: APIs that refuse 0 send
    a prompt log-prob pass with ``max_tokens=1`` and bill that token)."""
    return max(provider_info(provider).min_output_tokens, request.max_tokens)


@dataclass
class Tally:
    """Calls and tokens of some requests (per feature once divided by the features)."""

    calls: int = 0
    input: int = 0
    prefix: int = 0  #: input tokens in shared prefixes (what caching could serve)
    cached: int = 0  #: input tokens the provider's cache serves (its minimum applied)
    output: int = 0

    def add(self, other: "Tally") -> None:
        for name in ("calls", "input", "prefix", "cached", "output"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def scaled(self, factor: float) -> dict[str, float]:
        return {name: getattr(self, name) * factor for name in ("calls", "input", "prefix", "cached", "output")}


def tally(requests: Iterable[LLMRequest], counter: TokenCounter, provider: str, model: str,
          outputs: Mapping[str, float] | None = None) -> tuple[Tally, bool]:
    """What ``requests`` cost on ``provider:model``: input tokens by the provider's counter,
    the part its prompt cache serves once warm (:mod:`featurelens.llm.prompt_cache`), and
    output tokens: the measured mean for the request's purpose when ``outputs`` has one,
    else the most the request can bill (:func:`output_bound`). Also whether every output
    was measured. The one rule ``--dry-run`` and ``estimate`` both count with."""
    info = provider_info(provider)
    rule = info.cache_rule(model)
    result, measured = Tally(), True
    for request in requests:
        tokens = counter.tokens(request)
        result.calls += 1
        result.input += tokens.total
        result.prefix += tokens.prefix
        result.cached += rule.cached(tokens.prefix) if rule is not None else 0
        known = (outputs or {}).get(request.purpose)
        measured = measured and known is not None
        result.output += round(known) if known is not None else max(info.min_output_tokens, request.max_tokens)
    return result, measured


def estimate(store: Store, jobs: Iterable[Job], provider: str, model: str,
             prices: PriceTable | None = None, batch: bool = False, *,
             counter: TokenCounter | None = None, scale: float = 1.0,
             sampled: tuple[int, int] | None = None, settings=None) -> Estimate:
    """Count what running ``jobs`` on ``provider:model`` would send (nothing is sent);
    ``scale`` multiplies the counts when ``jobs`` are a sample of the selection."""
    prices = prices or PriceTable.load()
    counter = counter or counter_for(provider, model)
    result = Estimate(f"{provider}:{model}", counted_with=counter.method, sampled=sampled)
    sent = Tally()
    for chunk in batched(jobs, 256):
        keys = [[cache.cache_key(provider, model, r) for r in job.requests] for job in chunk]
        hits = cache.lookup(store, (k for ks in keys for k in ks))
        for job, job_keys in zip(chunk, keys):
            result.features += job.features
            for request, key in zip(job.requests, job_keys):
                if key in hits:
                    result.cached_calls += 1
                    continue
                sent.add(tally([request], counter, provider, model)[0])
    result.calls, result.input_tokens, result.max_output_tokens = sent.calls, sent.input, sent.output
    result.cached_input_tokens = sent.cached
    if scale != 1.0:
        for name in ("features", "calls", "cached_calls", "input_tokens", "cached_input_tokens",
                     "max_output_tokens"):
            setattr(result, name, round(getattr(result, name) * scale))
    if settings is not None:
        result.concurrency, result.rpm, result.tpm = settings.concurrency, settings.rpm, settings.tpm
    result.latency_s, result.latency_source = typical_latency(store, provider, model)
    price = prices.price(provider, model)
    if price is None:
        result.cost_usd = result.input_cost_usd = None
    else:
        result.input_cost_usd = price.cost(result.input_tokens, 0, result.cached_input_tokens, batch)
        result.cost_usd = price.cost(result.input_tokens, result.max_output_tokens,
                                     result.cached_input_tokens, batch)
    return result
