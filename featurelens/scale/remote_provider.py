"""Labeling across Ray workers: a provider whose requests are answered by a pool of actors.

``featurelens explain|score --executor ray --workers N`` wraps the ``provider:model`` in
:class:`RayProvider`. Each actor builds the real provider once (a ``local:`` model is
loaded once per actor, on its own GPU when the cluster has GPUs) and answers the
requests sent to it; the driver keeps the one engine, cache, journal and writer, so
results reach the store exactly once and only the driver opens DuckDB. Requests go to
the actor with the fewest requests in flight. When ``--rpm/--tpm`` are given, every
actor waits on one shared limiter actor (:mod:`featurelens.scale.limiter`) before
calling the provider, so the limits hold across workers. Requests and answers cross
process boundaries as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from featurelens.core.host.protocols import (
    LLMProviderBase,
    LLMRequest,
    LLMResponse,
    TokenLogprobs,
    declared,
)
from featurelens.core.ray.address import check_fits, check_workers
from featurelens.llm.engine import estimate_tokens
from featurelens.scale.cluster import ClusterError, connected
from featurelens.scale.limiter import SharedRateLimiter, shared_limiter


def response_to_json(response: LLMResponse) -> str:
    return json.dumps(asdict(response), default=str)


def response_from_json(text: str) -> LLMResponse:
    data = json.loads(text)
    for key in ("output_logprobs", "prompt_logprobs"):
        data[key] = [TokenLogprobs(**item) for item in data[key]]
    return LLMResponse(**data)


class ProviderHost:
    """An actor's body: the real provider, built once from its spec and options."""

    def __init__(self, llm: str, options_json: str, limiter: Any = None):
        from featurelens.llm.providers import build_provider

        self.provider = build_provider(llm, **json.loads(options_json))
        self.limiter = SharedRateLimiter(limiter) if limiter is not None else None

    def describe(self) -> dict[str, Any]:
        import os

        return {"pid": os.getpid(), "capabilities": sorted(self.provider.capabilities)}

    async def complete(self, request_json: str) -> str:
        request = LLMRequest(**json.loads(request_json))
        if self.limiter is not None:
            await self.limiter.acquire(estimate_tokens(request) + request.max_tokens)
        return response_to_json(await self.provider.complete(request))


class RayProvider:
    """Looks like the wrapped provider to the engine; its calls run on the actors."""

    def __init__(self, wrapped: Any, actors: list[Any]):
        self.name, self.model = wrapped.name, wrapped.model  # the same cache keys as in process
        self.capabilities = frozenset(wrapped.capabilities)
        self.key_env = declared(wrapped, "key_env", LLMProviderBase)
        self.actors = actors
        self.in_flight = [0] * len(actors)
        self.answered = [0] * len(actors)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        index = min(range(len(self.actors)), key=self.in_flight.__getitem__)
        self.in_flight[index] += 1
        try:
            answer = await self.actors[index].complete.remote(json.dumps(asdict(request)))
        except Exception as error:
            cause = getattr(error, "cause", None)  # the provider's own error, so the engine's
            if isinstance(cause, Exception):      # retry rules read its HTTP status as usual
                raise cause from None
            raise
        finally:
            self.in_flight[index] -= 1
        self.answered[index] += 1
        return response_from_json(answer)


@contextmanager
def ray_provider(llm: str, provider_options: dict[str, Any] | None = None, *, workers: int = 2,
                 address: str | None = None, rpm: float | None = None,
                 tpm: float | None = None) -> Iterator[RayProvider]:
    """A :class:`RayProvider` over ``workers`` actors; the actors end with the block.

    Builds the provider once here first, so a bad spec, option or missing key is one
    clear error before any actor starts (and the engine reads its capabilities).
    """
    from featurelens.llm.providers import build_provider

    check_workers(workers, local=address is None)
    local = build_provider(llm, **(provider_options or {}))
    with connected(address, num_cpus=workers) as ray:
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        check_fits(ray.cluster_resources(), workers, 0 if gpus else 1, 1 if gpus else 0)
        limiter = shared_limiter(ray, llm, rpm, tpm) if (rpm or tpm) else None
        # A worker that dies is restarted and its in-flight requests sent again: answers are
        # only written by the driver, so a repeated request cannot duplicate a result.
        host = ray.remote(**({"num_gpus": 1} if gpus else {"num_cpus": 1}), max_concurrency=1000,
                          max_restarts=3, max_task_retries=3)(ProviderHost)
        actors = [host.remote(llm, json.dumps(provider_options or {}, default=str), limiter)
                  for _ in range(workers)]
        try:
            ray.get([actor.describe.remote() for actor in actors])  # started, or a clear failure now
        except Exception as error:  # noqa: BLE001 - reported as one sentence, not Ray's traceback
            for actor in actors:
                ray.kill(actor)
            first = str(getattr(error, "cause", None) or error).strip().splitlines()
            raise ClusterError(
                f"The Ray workers could not start {llm} ({first[-1] if first else type(error).__name__}); "
                "check that every node can read the model and has the provider's packages, "
                "then run the same command again.") from None
        try:
            yield RayProvider(local, actors)
        finally:
            for actor in actors:
                ray.kill(actor)
