"""The batch engine: run many LLM jobs concurrently, write results as they arrive.

A :class:`Job` is one feature's unit of work: the requests it needs and a ``finish``
callback that turns the responses into store rows. Explaining and every scorer are
jobs, so they share one engine with

- bounded concurrency (``concurrency`` requests in flight, about twice as many jobs),
- per-provider request and token rate limits (:mod:`featurelens.llm.ratelimit`),
- retries with backoff that honour ``retry-after`` (:mod:`featurelens.llm.retry`),
- the response cache (:mod:`featurelens.llm.cache`): a rerun never pays twice,
- one ``llm_calls`` row per request with tokens, latency and cost, and one
  ``llm_attempts`` row per request actually sent (retries included),
- every answer durable the moment it arrives (:mod:`featurelens.llm.journal`),
- failures stored with their reasons, never as empty results; an answer that cannot be
  read is a failure and leaves the cache, so a rerun asks again
  (:mod:`featurelens.llm.failure_log`),
- buffered transactional writes (:mod:`featurelens.llm.writer`).

Jobs are pulled lazily from an iterator, so memory stays flat in the number of
features. Use :func:`run_jobs` from synchronous code.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from featurelens.core.gc_pause import paused_batches
from featurelens.core.host.protocols import (
    LLMProvider,
    LLMProviderBase,
    LLMRequest,
    LLMResponse,
    ParseError,
    declared,
)
from featurelens.core.progress import progress
from featurelens.core.redaction import configured_secrets
from featurelens.core.store.argument import StoreLike, using_store
from featurelens.core.store.database import Store
from featurelens.llm import cache, journal
from featurelens.llm.answer_secrets import scrub
from featurelens.llm.pricing import PriceTable
from featurelens.llm.ratelimit import RateLimiter
from featurelens.llm.retry import (
    AuthenticationFailed,
    RetryPolicy,
    classify,
    http_status,
)
from featurelens.llm.writer import ResultWriter

#: Characters of an unreadable answer kept in ``failures.answer``.
ANSWER_CHARS = 500

#: ``finish(responses) -> {table: [row, ...]}``; ``None`` in responses: that call failed.
Finish = Callable[[list["LLMResponse | None"]], dict[str, list[dict[str, Any]]]]


@dataclass
class Job:
    """One feature's work for the engine.

    ``finish`` receives one response per request, in order (``None`` where the call
    failed for good; only when ``require_all`` is false, otherwise the job fails
    first). It returns rows per table (``{"explanations": [...]}``) and may raise
    :class:`ParseError`, which records a failure with its message.
    """

    dictionary_id: str
    feature: int
    stage: str  #: failures.stage and llm_calls.purpose fallback: explain, score:simulation
    requests: list[LLMRequest]
    finish: Finish
    require_all: bool = True
    method: str | None = None  #: failures.method: which explainer/scorer, LLM and options
    #: Adaptive jobs: ``follow_up(responses so far) -> next requests`` (``[]``: done).
    follow_up: Callable[[list["LLMResponse | None"]], list[LLMRequest]] | None = None
    #: Features this job does (several for a grouped explanation request): counted and shown per
    #: feature, its ``failures`` rows being the features that failed inside it.
    features: int = 1
    #: ``(dictionary_id, feature)`` of each of those features: a failure of the whole job is
    #: recorded, and a success resolves earlier failures, for each of them.
    members: tuple[tuple[str, int], ...] = ()

    @property
    def work(self) -> tuple[str, str | None, int | None, str | None]:
        """What a failure row is kept per: (stage, dictionary, feature, method)."""
        return (self.stage, self.dictionary_id, self.feature, self.method)


@dataclass
class EngineSettings:
    """How hard to push the provider; defaults suit a hosted API tier."""

    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Jobs built (and cache-checked) at a time; a labeling stage sets it to its page of
    #: records (llm/offline.record_chunk), so a finished chunk frees its records (core/gc_pause).
    chunk_size: int = 256
    flush_rows: int = 500
    flush_seconds: float = 1.0
    cache_only: bool = False  #: a cache miss fails instead of calling (batch collection)
    progress: bool = True
    #: Worker processes for a stage whose component needs no LLM (llm/offline_pool); ``None``:
    #: one per core from ``offline_pool.MIN_FEATURES`` items, 1: none.
    processes: int | None = None


@dataclass
class RunStats:
    """Counters of one engine run (also stored as the run's progress)."""

    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    calls: int = 0
    attempts: int = 0  #: requests sent (calls answered or failed, retries included)
    cached_calls: int = 0
    failed_calls: int = 0
    retries: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    skipped: int = 0  #: already done before this run (resumed)
    resolved: int = 0  #: earlier failures this run's successes resolved
    never_fired: int = 0  #: selected features that never fired: no work, not failures
    elapsed_s: float = 0.0
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_tokens(request: LLMRequest) -> int:
    """Rough input tokens (4 characters each) for rate limits and dry runs."""
    chars = len(request.prompt or "") + sum(len(m.get("content", "")) for m in request.messages)
    return chars // 4 + 4 * len(request.messages)


class Engine:
    """Runs jobs against one provider; see the module docstring."""

    def __init__(self, store: Store, provider: LLMProvider, *, settings: EngineSettings | None = None,
                 run_id: str | None = None, prices: PriceTable | None = None):
        self.store = store
        self.provider = provider
        self.settings = settings or EngineSettings()
        self.run_id = run_id
        self.prices = prices or PriceTable.load()
        self.stats = RunStats(run_id=run_id)
        journal.replay(store)  # what a killed run received but did not commit
        self.journal = journal.ResponseJournal(journal.journal_path(store))
        self.writer = ResultWriter(store, run_id, flush_rows=self.settings.flush_rows,
                                   flush_seconds=self.settings.flush_seconds, journal=self.journal)
        self._fatal: BaseException | None = None
        self._resume_at = 0.0  #: monotonic time before which no request is sent
        self._inflight: dict[str, asyncio.Future] = {}  #: cache key -> answer on its way
        self._secrets = configured_secrets()  #: key values an answer must not carry into the store

    # -- one call ------------------------------------------------------------------
    def _record_call(self, job: Job, request: LLMRequest, key: str, status: str,
                     response: LLMResponse | None, latency: float | None, error: str | None,
                     call_id: str | None = None, attempts: int = 0) -> dict[str, Any]:
        cost = None
        if response is not None and status == "ok":
            cost = self.prices.cost(self.provider.name, self.provider.model, response.input_tokens,
                                    response.output_tokens, response.cached_input_tokens)
            if cost is None:
                self.stats.unpriced_calls += 1
            else:
                self.stats.cost_usd += cost
            self.stats.input_tokens += response.input_tokens
            self.stats.cached_input_tokens += response.cached_input_tokens
            self.stats.output_tokens += response.output_tokens
        elif status == "cached":
            cost = 0.0
        row = {
            "call_id": call_id or uuid.uuid4().hex, "cache_key": key, "provider": self.provider.name,
            "model": self.provider.model, "purpose": request.purpose or job.stage,
            "dictionary_id": job.dictionary_id, "feature": job.feature, "status": status,
            "error": error,
            "input_tokens": response.input_tokens if response is not None else None,
            "cached_input_tokens": response.cached_input_tokens if response is not None else None,
            "output_tokens": response.output_tokens if response is not None else None,
            "cost_usd": cost, "latency_s": latency, "batch_id": None, "run_id": self.run_id,
            "attempts": attempts,
        }
        self.writer.add("llm_calls", row)
        return row

    def _attempt_row(self, job: Job, request: LLMRequest, key: str, call_id: str,
                     attempt: int) -> dict[str, Any]:
        return {"attempt_id": f"{call_id}-{attempt}", "call_id": call_id, "attempt": attempt,
                "cache_key": key, "provider": self.provider.name, "model": self.provider.model,
                "purpose": request.purpose or job.stage, "dictionary_id": job.dictionary_id,
                "feature": job.feature, "outcome": "sent", "http_status": None, "error": None,
                "latency_s": None, "run_id": self.run_id}

    async def _call(self, job: Job, request: LLMRequest, key: str,
                    cached: LLMResponse | None) -> tuple[LLMResponse | None, str | None]:
        if cached is not None:
            self.stats.cached_calls += 1
            self._record_call(job, request, key, "cached", cached, 0.0, None)
            return cached, None
        pending = self._inflight.get(key)
        if pending is not None:  # the same request is already on its way: share its answer
            response, reason = await asyncio.shield(pending)
            if response is not None:
                self.stats.cached_calls += 1
                self._record_call(job, request, key, "cached", response, 0.0, None)
            return response, reason
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._call_provider(job, request, key)
        except BaseException as error:
            future.set_result((None, f"{type(error).__name__}: the request was abandoned"))
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(result)
        return result

    async def _call_provider(self, job: Job, request: LLMRequest,
                             key: str) -> tuple[LLMResponse | None, str | None]:
        if self.settings.cache_only:
            known = self.store.execute(  # rare: say what the provider said, when it said it
                "SELECT error FROM llm_calls WHERE cache_key = ? AND status = 'error' "
                "AND error IS NOT NULL ORDER BY created_at DESC LIMIT 1", [key])
            reason = (f"the provider batch answered with an error: {known[0][0]}" if known else
                      "no cached response for this request (the provider batch did not answer it)")
            self.stats.failed_calls += 1
            self._record_call(job, request, key, "error", None, None, reason)
            return None, reason
        policy = self.settings.retry
        reason = "not attempted"
        call_id = uuid.uuid4().hex
        sent = 0
        for attempt in range(policy.max_attempts):
            while (pause := self._resume_at - time.monotonic()) > 0:  # provider said retry-after
                await asyncio.sleep(pause)
            await self.limiter.acquire(estimate_tokens(request) + request.max_tokens)
            start = time.perf_counter()
            try:
                async with self.slots:
                    sent += 1
                    self.stats.attempts += 1
                    tried = self._attempt_row(job, request, key, call_id, sent)
                    self.journal.sent(tried)
                    start = time.perf_counter()
                    response = scrub(await self.provider.complete(request), self._secrets)
            except asyncio.CancelledError:
                if sent and tried["outcome"] == "sent":
                    tried.update(outcome="interrupted", error="cancelled before an answer arrived",
                                 latency_s=time.perf_counter() - start)
                    self.writer.add("llm_attempts", tried)
                    self.journal.ended({"llm_attempts": [tried]})
                raise
            except Exception as error:  # noqa: BLE001 - classified below, never swallowed silently
                verdict = classify(error)
                reason = verdict.reason
                last = not verdict.retryable or attempt + 1 == policy.max_attempts
                tried.update(outcome="failed" if last else "retried", http_status=http_status(error),
                             error=reason[:2000], latency_s=time.perf_counter() - start)
                self.writer.add("llm_attempts", tried)
                self.journal.ended({"llm_attempts": [tried]})
                if reason.startswith("authentication failed"):
                    self.stats.failed_calls += 1
                    call = self._record_call(job, request, key, "error", None, None, reason, call_id, sent)
                    self.journal.ended({"llm_calls": [call]})
                    env = declared(self.provider, "key_env", LLMProviderBase)
                    hint = f"set a valid key in ${env}" if env else "check the provider's credentials"
                    raise AuthenticationFailed(
                        f"{self.provider.name}:{self.provider.model} refused the credentials "
                        f"({reason}); {hint} and run the same command again to resume.") from None
                if not verdict.retryable or attempt + 1 == policy.max_attempts:
                    break
                self.stats.retries += 1
                delay = policy.delay(attempt, verdict.retry_after)
                if verdict.retry_after is not None:  # a quota applies to every request, not one
                    self._resume_at = max(self._resume_at, time.monotonic() + delay)
                await asyncio.sleep(delay)
                continue
            latency = time.perf_counter() - start
            self.stats.calls += 1
            entry = {"cache_key": key, "response": cache.response_to_json(response)}
            self.writer.add("llm_cache", entry)
            tried.update(outcome="ok", latency_s=latency)
            self.writer.add("llm_attempts", tried)
            call = self._record_call(job, request, key, "ok", response, latency, None, call_id, sent)
            self.journal.ended({"llm_cache": [entry], "llm_calls": [call], "llm_attempts": [tried]})
            return response, None
        self.stats.failed_calls += 1
        call = self._record_call(job, request, key, "error", None, None, reason, call_id, sent)
        self.journal.ended({"llm_calls": [call]})
        return None, reason

    # -- one job -------------------------------------------------------------------
    def _fail(self, job: Job, reason: str, answer: str | None = None) -> None:
        members = job.members or ((job.dictionary_id, job.feature),)
        self.stats.failed += len(members)
        self.stats.jobs += len(members) - 1
        for dictionary_id, feature in members:
            self.writer.add("failures", {"run_id": self.run_id, "stage": job.stage,
                                         "dictionary_id": dictionary_id, "feature": feature,
                                         "method": job.method, "reason": reason[:2000],
                                         "answer": answer[:ANSWER_CHARS] if answer is not None else None})

    def _unreadable(self, job: Job, keys: list[str], responses: list[LLMResponse | None],
                    reason: str, reject: bool = True) -> None:
        """The answers could not be used: a failure that shows them and, when the answer
        itself is at fault (``reject``), out of the cache so that a rerun asks again. An
        error of the reading code keeps the cache: the answer may be fine, and was paid."""
        answer = next((r.text for r in responses if r is not None and r.text), None)
        if answer is not None:
            reason = f"{reason} (the answer began {answer[:60]!r})"
        self._fail(job, reason, answer)
        if reject:
            self.writer.reject([k for k, r in zip(keys, responses, strict=True) if r is not None])

    async def _run_job(self, job: Job, keys: list[str], hits: dict[str, LLMResponse]) -> None:
        if len(job.requests) == 1:  # the common case: no gather, no extra task
            results = [await self._call(job, job.requests[0], keys[0], hits.get(keys[0]))]
        else:
            results = await asyncio.gather(*(self._call(job, r, k, hits.get(k))
                                             for r, k in zip(job.requests, keys)))
        if job.follow_up is not None:
            keys = list(keys)  # grows with each round, so a rejected answer's key is found
            results = await self._follow_up(job, list(results), keys)
        self._complete(job, keys, list(results))

    def _complete(self, job: Job, keys: list[str],
                  results: list[tuple[LLMResponse | None, str | None]]) -> None:
        """Finish ``job`` from its answers: its rows, or its failure, go to the writer."""
        responses = [r for r, _ in results]
        errors = [e for _, e in results if e]
        self.stats.jobs += 1
        if errors and job.require_all:
            self._fail(job, f"LLM call failed: {errors[0]}")
        else:
            try:
                rows = job.finish(responses)
            except ParseError as error:
                if job.requests:
                    self._unreadable(job, keys, responses, f"unusable answer: {error}")
                else:
                    self._fail(job, str(error))
            except Exception as error:  # noqa: BLE001 - one bad feature must not stop a million
                self._unreadable(job, keys, responses,
                                 f"{type(error).__name__} while reading the answer: {error}",
                                 reject=False)
            else:
                self.stats.succeeded += 1
                if job.features > 1:
                    failed_inside = {(r["dictionary_id"], r["feature"]) for r in rows.get("failures", ())}
                    self.stats.jobs += job.features - 1
                    self.stats.succeeded += job.features - 1 - len(failed_inside)
                    self.stats.failed += len(failed_inside)
                    for dictionary_id, feature in job.members:
                        if (dictionary_id, feature) not in failed_inside:
                            self.writer.succeeded((job.stage, dictionary_id, feature, job.method))
                else:
                    self.writer.succeeded(job.work)
                for table, table_rows in rows.items():
                    for row in table_rows:
                        self.writer.add(table, row)
        self.writer.job_done(asked=bool(job.requests) or job.follow_up is not None)
        self.bar.update(job.features)

    async def _follow_up(self, job: Job, results: list[tuple[LLMResponse | None, str | None]],
                         keys: list[str]) -> list[tuple[LLMResponse | None, str | None]]:
        """Rounds of an adaptive job: ask for more until its ``follow_up`` says done;
        each round's cache keys are appended to ``keys``."""
        while not (job.require_all and any(e for _, e in results)):
            try:
                more = job.follow_up([r for r, _ in results])
            except Exception as error:  # noqa: BLE001 - reported as the job's failure below
                return results + [(None, f"{type(error).__name__} while planning the next round: {error}")]
            if not more:
                break
            more_keys = [cache.cache_key(self.provider.name, self.provider.model, r) for r in more]
            keys += more_keys
            hits = cache.lookup(self.store, more_keys)
            results += await asyncio.gather(*(self._call(job, r, k, hits.get(k))
                                              for r, k in zip(more, more_keys, strict=True)))
        return results

    # -- the loop ------------------------------------------------------------------
    def skip(self, n: int) -> None:
        """Count ``n`` features a job source left out because they are already done."""
        self.stats.skipped += n
        self.bar.update(n)

    def _flush(self) -> None:
        # total and updated_at let `featurelens serve` show how far a running job is
        self.writer.flush(self.stats.as_dict() | {"total": self.bar.total, "updated_at": time.time()})
        self.stats.resolved = self.writer.resolved_count
        self.bar.set_postfix(failed=self.stats.failed, cost=f"${self.stats.cost_usd:.4f}",
                             refresh=False)

    def _finish_offline(self, chunk: list[Job]) -> list[Job]:
        """Finish the chunk's jobs that ask nothing (offline explainers and scorers, refused
        features) here, without a task, at the speed of the label itself; the jobs that
        ask an LLM are returned to be run."""
        asking = []
        for job in chunk:
            if job.requests or job.follow_up is not None:
                asking.append(job)
            else:
                self._complete(job, [], [])
        return asking

    async def run(self, jobs: Iterable[Job], *, total: int | None = None,
                  desc: str = "labeling") -> RunStats:
        """Run every job; returns the counters. Completed work is written even on error."""
        started = time.perf_counter()
        self.slots = asyncio.Semaphore(self.settings.concurrency)
        self.limiter = RateLimiter(self.settings.rpm, self.settings.tpm)
        job_slots = asyncio.Semaphore(max(2 * self.settings.concurrency, 4))
        tasks: set[asyncio.Task[None]] = set()
        self.bar = progress(total, unit="feat", desc=desc, enabled=self.settings.progress, smoothing=0.1)

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            job_slots.release()
            if not task.cancelled() and task.exception() is not None and self._fatal is None:
                self._fatal = task.exception()

        try:
            # jobs are built (records read, windows cut) and offline jobs finished with the
            # collector paused; only the jobs that ask an LLM outlive the pause
            for asking in paused_batches(jobs, self.settings.chunk_size, self._finish_offline):
                if self.writer.due():
                    self._flush()
                keys = [[cache.cache_key(self.provider.name, self.provider.model, r)
                         for r in job.requests] for job in asking]
                hits = cache.lookup(self.store, (k for ks in keys for k in ks)) if asking else {}
                for job, job_keys in zip(asking, keys):
                    await job_slots.acquire()
                    if self._fatal is not None:
                        raise self._fatal
                    task = asyncio.create_task(self._run_job(job, job_keys, hits))
                    tasks.add(task)
                    task.add_done_callback(done)
                    if self.writer.due():
                        self._flush()
            while tasks:
                await asyncio.wait(set(tasks), timeout=self.settings.flush_seconds)
                if self._fatal is not None:
                    raise self._fatal
                self._flush()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.stats.elapsed_s += time.perf_counter() - started
            self._flush()
            self.journal.close()
            self.bar.close()
        return self.stats


def run_jobs(store: Store | StoreLike, provider: LLMProvider, jobs: Iterable[Job], *,
             settings: EngineSettings | None = None, run_id: str | None = None,
             prices: PriceTable | None = None, total: int | None = None,
             desc: str = "labeling") -> RunStats:
    """Run ``jobs`` to completion from synchronous code (see :class:`Engine`); ``store``
    may be an open store or its path."""
    if not isinstance(store, Store):
        with using_store(store) as opened:
            return run_jobs(opened, provider, jobs, settings=settings, run_id=run_id, prices=prices,
                            total=total, desc=desc)
    engine = Engine(store, provider, settings=settings, run_id=run_id, prices=prices)
    return asyncio.run(engine.run(jobs, total=total, desc=desc))
