"""The one planner: what labeling jobs would send, cost and take, before anything is spent.

``--dry-run`` plans the jobs a run would send (the stage's remaining jobs, so resumed
work and cached responses are left out exactly as they would be); ``featurelens
estimate`` (:mod:`featurelens.jobs.cost_estimate`) plans every selected feature's jobs
as if none were done. Both build their jobs with the stage's own code
(:meth:`featurelens.llm.stage.LabelingStage.jobs` and ``selection_jobs``), on the same
sample of a large selection (:mod:`featurelens.llm.plan_sample`), and count them here
with :func:`plan_jobs`: each request's input tokens with the provider's declared counter
(:mod:`featurelens.llm.token_count`), the part its prompt cache serves
(:func:`tally`), the output bounded by each request's ``max_tokens`` (or the measured
mean, for ``estimate``). Wall time comes from the concurrency, the rate limits and one
latency: :func:`typical_latency`, the median of this store's answered calls to the model,
or an assumed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from featurelens.core.batched import batched
from featurelens.core.host.protocols import LLMRequest
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


@dataclass(frozen=True)
class Latency:
    """Seconds a call to one provider:model takes: measured in the store, or assumed."""

    seconds: float
    calls: int = 0  #: answered calls the median is taken over (0: assumed)

    @property
    def measured(self) -> bool:
        return self.calls > 0

    @property
    def source(self) -> str:
        if self.measured:
            return f"median of {self.calls:,} calls in this store"
        return "assumed: no call to this model in this store yet"


def typical_latency(store: Store, provider: str, model: str) -> Latency:
    """The median seconds of this model's answered calls in the store (calls with a measured
    latency: batch answers and cache hits have none), else :data:`ASSUMED_LATENCY_S`."""
    row = store.execute("SELECT median(latency_s), count(*) FROM llm_calls WHERE provider = ? "
                        "AND model = ? AND status = 'ok' AND latency_s > 0", [provider, model])
    if row and row[0][1]:
        return Latency(float(row[0][0]), int(row[0][1]))
    return Latency(ASSUMED_LATENCY_S)


def measured_outputs(store: Store, provider: str, model: str) -> dict[str, float]:
    """The mean output tokens of this model's answered calls in the store, per purpose."""
    rows = store.execute(
        "SELECT purpose, avg(output_tokens) FROM llm_calls WHERE provider = ? AND model = ? "
        "AND status = 'ok' AND output_tokens IS NOT NULL GROUP BY purpose", [provider, model])
    return {purpose: float(mean) for purpose, mean in rows}


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


@dataclass
class Planned:
    """What some jobs would send: the features they cover, the calls the response cache
    answers, and the calls and tokens that would be sent."""

    features: int = 0
    cached_calls: int = 0
    sent: Tally = field(default_factory=Tally)
    output_measured: bool = True  #: every output count is a measured mean, not a bound


def plan_jobs(store: Store, jobs: Iterable[Job], provider: str, model: str, counter: TokenCounter, *,
              outputs: Mapping[str, float] | None = None, cache_answers: bool = True) -> Planned:
    """Count ``jobs`` on ``provider:model`` (nothing is sent): each request with :func:`tally`;
    with ``cache_answers``, requests the response cache already holds are counted apart, as
    the run would answer them without a call."""
    result = Planned()
    for chunk in batched(jobs, 256):
        keys: list[list[str | None]] = [[None] * len(job.requests) for job in chunk]
        hits: Mapping[str, object] = {}
        if cache_answers:
            keys = [[cache.cache_key(provider, model, r) for r in job.requests] for job in chunk]
            hits = cache.lookup(store, (k for ks in keys for k in ks))
        for job, job_keys in zip(chunk, keys):
            result.features += job.features
            for request, key in zip(job.requests, job_keys):
                if key in hits:
                    result.cached_calls += 1
                    continue
                counted, measured = tally([request], counter, provider, model, outputs)
                result.sent.add(counted)
                result.output_measured = result.output_measured and measured
    return result


def estimate(store: Store, jobs: Iterable[Job], provider: str, model: str,
             prices: PriceTable | None = None, batch: bool = False, *,
             counter: TokenCounter | None = None, scale: float = 1.0,
             sampled: tuple[int, int] | None = None, settings=None) -> Estimate:
    """Count what running ``jobs`` on ``provider:model`` would send (``--dry-run``; nothing is
    sent); ``scale`` multiplies the counts when ``jobs`` are a sample of the selection."""
    prices = prices or PriceTable.load()
    counter = counter or counter_for(provider, model)
    result = Estimate(f"{provider}:{model}", counted_with=counter.method, sampled=sampled)
    planned = plan_jobs(store, jobs, provider, model, counter)
    sent = planned.sent
    result.features, result.cached_calls = planned.features, planned.cached_calls
    result.calls, result.input_tokens, result.max_output_tokens = sent.calls, sent.input, sent.output
    result.cached_input_tokens = sent.cached
    if scale != 1.0:
        for name in ("features", "calls", "cached_calls", "input_tokens", "cached_input_tokens",
                     "max_output_tokens"):
            setattr(result, name, round(getattr(result, name) * scale))
    if settings is not None:
        result.concurrency, result.rpm, result.tpm = settings.concurrency, settings.rpm, settings.tpm
    latency = typical_latency(store, provider, model)
    result.latency_s, result.latency_source = latency.seconds, latency.source
    price = prices.price(provider, model)
    if price is None:
        result.cost_usd = result.input_cost_usd = None
    else:
        result.input_cost_usd = price.cost(result.input_tokens, 0, result.cached_input_tokens, batch)
        result.cost_usd = price.cost(result.input_tokens, result.max_output_tokens,
                                     result.cached_input_tokens, batch)
    return result
