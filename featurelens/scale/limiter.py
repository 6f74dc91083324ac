"""One rate limit shared by every process of a Ray run: a limiter actor.

``--rpm/--tpm`` are per API key, not per process. When labeling requests are sent from
several Ray workers (or several drivers joined to one cluster), each asks this actor
before calling the provider, so the limits hold for all of them together. The actor
holds the same token buckets as :class:`featurelens.llm.ratelimit.RateLimiter`.
"""

from __future__ import annotations

from typing import Any

from featurelens.llm.ratelimit import RateLimiter

NAMESPACE = "featurelens"


class LimiterState:
    """The actor's body: one :class:`RateLimiter`, awaited in the actor's event loop."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.limiter = RateLimiter(rpm, tpm)

    async def acquire(self, tokens: int = 0) -> None:
        await self.limiter.acquire(tokens)


def limiter_name(llm: str, rpm: float | None, tpm: float | None) -> str:
    """Runs on the same ``provider:model`` with the same limits share one actor."""
    return f"featurelens-limiter:{llm}:rpm={rpm}:tpm={tpm}"


def shared_limiter(ray: Any, llm: str, rpm: float | None, tpm: float | None) -> Any:
    """The cluster's limiter actor for these limits, created on first use (detached: it
    outlives this driver so a second run on the same cluster shares the same buckets)."""
    actor = ray.remote(num_cpus=0, max_concurrency=1000)(LimiterState)
    return actor.options(name=limiter_name(llm, rpm, tpm), namespace=NAMESPACE,
                         get_if_exists=True, lifetime="detached").remote(rpm, tpm)


class SharedRateLimiter:
    """The client side: ``await limiter.acquire(tokens)`` like a local :class:`RateLimiter`."""

    def __init__(self, actor: Any):
        self.actor = actor

    async def acquire(self, tokens: int = 0) -> None:
        await self.actor.acquire.remote(int(tokens))
