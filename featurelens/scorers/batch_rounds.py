"""Adaptive scoring through a batch API: one round per collection, so the saving is kept.

Live, the engine asks for each next round as soon as the last one is answered. A batch
takes hours, so rounds advance once per ``batches collect``: the score run's first
rounds are submitted; each collection replays every unscored job from the response
cache (no call is made) until it reaches a round the cache does not hold, and submits
those rounds as the next batches. Once no job needs another round, the run is finished
cache-only exactly like a live run, stopping at the same round for every feature.

A request the provider answered with an error is not cached but has an ``llm_calls``
error row: it is not sent again, and the cache-only finish fails its job with the
provider's reason.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from featurelens.core.host.protocols import BatchClient, LLMProvider, LLMResponse
from featurelens.core.store.database import Store
from featurelens.llm import cache
from featurelens.llm.engine import Job, RunStats


def _errored(store: Store, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = store.execute(f"SELECT DISTINCT cache_key FROM llm_calls WHERE status = 'error' AND cache_key IN "
                         f"({','.join('?' * len(keys))})", keys)
    return {r[0] for r in rows}


def next_rounds(store: Store, provider: LLMProvider, jobs: Iterable[Job]) -> Iterator[Job]:
    """For each job, the first round the cache cannot answer (jobs needing none are left out)."""
    def key(request) -> str:
        return cache.cache_key(provider.name, provider.model, request)

    for job in jobs:
        requests = list(job.requests)
        responses: list[LLMResponse | None] = []
        while requests:
            keys = [key(r) for r in requests]
            hits = cache.lookup(store, keys)
            missing = [(r, k) for r, k in zip(requests, keys, strict=True) if k not in hits]
            if missing:
                failed = _errored(store, [k for _, k in missing])
                unsent = [r for r, k in missing if k not in failed]
                if unsent:
                    yield Job(job.dictionary_id, job.feature, job.stage, unsent, job.finish)
                break  # errors end the job; the cache-only finish reports them
            responses += [hits[k] for k in keys]
            if job.follow_up is None:
                break
            requests = job.follow_up(responses)


class RoundStats(RunStats):
    """A run's counters plus what ``batches collect`` should tell the user next."""

    notes: list[str]


def advance(store: Store, provider: LLMProvider, jobs: Iterable[Job], *, run_id: str, purpose: str,
            label: str, client: BatchClient | None = None) -> RoundStats | None:
    """Submit the next uncached round of ``jobs``; ``None`` when every job is complete.
    ``client``: the provider's batch client when the caller already made it."""
    from featurelens.llm.batch.submit import submit_jobs

    submission = submit_jobs(store, provider, next_rounds(store, provider, jobs), run_id=run_id, purpose=purpose,
                             client=client)
    if not (submission.requests or submission.already_submitted):
        return None
    stats = RoundStats(run_id=run_id)
    stats.notes = [f"  {label}: submitted the next round, {submission.requests:,} requests for "
                   f"{submission.features:,} explanations in {len(submission.batch_ids)} batch(es); "
                   "collect again when they are done."]
    return stats
