"""``--batch-api`` mode: submit a job's requests as provider batches, collect them later.

Submitting walks the same jobs as a live run, leaves out requests already cached or
already waiting in another batch, splits the rest to the provider's limits and records
every batch (with what each request was for) in the ``batches`` table before moving on.
Collecting (from any later process) downloads finished batches into the response
cache and ``llm_calls`` (ids derived from batch and request, so a repeated collection
adds nothing twice), then finishes each run whose batches are all in by running it
again in cache-only mode: the results are written exactly as a live run writes them,
and requests the batch did not answer become failures with the provider's reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import polars as pl

from featurelens.core.batched import batched
from featurelens.core.host.protocols import BatchClient, LLMProvider, close_provider
from featurelens.core.redaction import configured_secrets
from featurelens.core.store.database import Store
from featurelens.llm import cache
from featurelens.llm.answer_secrets import scrub
from featurelens.llm.batch import intent as batch_intent
from featurelens.llm.batch.clients import batch_client
from featurelens.llm.batch.errors import batch_failure
from featurelens.llm.batch.request_file import RequestFile
from featurelens.llm.batch.results import sort_results, unanswered_reason
from featurelens.llm.engine import Job, RunStats
from featurelens.llm.pricing import PriceTable
from featurelens.llm.runs import run_config

#: Statuses after which a batch needs nothing more from the provider ("damaged": its
#: request list in the store is unreadable, so its answers cannot be matched; its run's
#: requests without an answer are failures that a rerun sends again).
CLOSED = ("collected", "damaged")

#: Finishes a run whose batch answers are all cached: ``(store, run config, prices,
#: progress) -> RunStats``. The job that submitted the run provides it (explain and
#: score live above this layer), keyed by the run's kind.
Finisher = Callable[[Store, dict[str, Any], PriceTable, bool], RunStats]


@dataclass
class Submission:
    run_id: str
    batch_ids: list[str] = field(default_factory=list)
    requests: int = 0
    cached: int = 0
    already_submitted: int = 0
    features: int = 0
    notes: list[str] = field(default_factory=list)  #: what reconciling earlier submissions did

    def lines(self) -> list[str]:
        out = list(self.notes) + [f"submitted {self.requests:,} requests for {self.features:,} features in "
               f"{len(self.batch_ids)} batch(es) (run {self.run_id}); {self.cached:,} were "
               f"cached and {self.already_submitted:,} already waiting in earlier batches."]
        out += [f"  batch {b}" for b in self.batch_ids]
        out.append("Check with `featurelens batches status`; when done, `featurelens batches collect`.")
        return out


def request_map(text: Any) -> dict[str, list[Any]] | None:
    """A ``batches.requests`` value as ``{cache key: [dictionary, feature, purpose]}``, or
    ``None`` when the stored text is not of that shape (damaged or planted)."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 3 for k, v in value.items()):
        return None
    return value


def _damaged_row(batch_id: str) -> str:
    return (f"batch {batch_id}: its request list in the store's batches table is damaged, so its "
            "answers cannot be matched to requests and it was left aside (the provider is not at "
            "fault); its requests may be submitted again")


def _waiting_keys(store: Store, provider: LLMProvider, notes: list[str]) -> set[str]:
    rows = store.execute(
        "SELECT batch_id, CAST(requests AS VARCHAR) FROM batches WHERE provider = ? AND model = ? "
        f"AND status NOT IN ({','.join('?' * len(CLOSED))})",
        [provider.name, provider.model, *CLOSED])
    keys: set[str] = set()
    for batch_id, text in rows:
        found = request_map(text)
        if found is None:
            notes.append(_damaged_row(batch_id) + ".")
            continue
        keys.update(found)
    return keys


def submit_jobs(store: Store, provider: LLMProvider, jobs: Iterable[Job], *, run_id: str,
                purpose: str, client: BatchClient | None = None) -> Submission:
    """Send every uncached request of ``jobs`` as provider batches; record them. ``client``:
    the provider's batch client when the caller already made it.

    Lines go to a temporary file as they are made (:class:`RequestFile`), cut at the
    provider's request and byte limits, so memory holds one chunk of jobs, one file's
    request map and the keys already waiting in batches (about 150 MB a million requests:
    the same prompt for two features is sent once, whichever files they fall in)."""
    client = client or batch_client(provider)
    limits = client.limits
    result = Submission(run_id)
    waiting: set[str] = set()
    part = RequestFile()
    meta: dict[str, list[Any]] = {}

    async def send() -> None:
        nonlocal part, meta
        if not len(part):
            return
        # recorded before the provider is asked, so a crash in between never pays twice
        placeholder = batch_intent.record_intent(store, provider, purpose=purpose, run_id=run_id,
                                                 request_count=len(part), requests=meta)
        try:
            batch_id = await client.submit(part, placeholder)
        except Exception as error:
            if batch_intent.surely_not_created(error):
                batch_intent.drop(store, placeholder)
            raise
        finally:
            part.close()
        batch_intent.confirm(store, placeholder, batch_id)
        result.batch_ids.append(batch_id)
        result.requests += len(part)
        # a later feature with the same prompt (the same key) is waiting in this batch now:
        # without this it would go into a later file and be paid twice
        waiting.update(meta)
        part, meta = RequestFile(), {}

    async def main() -> None:
        nonlocal waiting
        try:
            result.notes = await batch_intent.reconcile_with(store, provider)
            waiting = _waiting_keys(store, provider, result.notes)
            for chunk in batched(jobs, 256):
                keys = [[cache.cache_key(provider.name, provider.model, r) for r in job.requests]
                        for job in chunk]
                hits = cache.lookup(store, (k for ks in keys for k in ks))
                for job, job_keys in zip(chunk, keys):
                    result.features += 1
                    for request, key in zip(job.requests, job_keys):
                        if key in hits:
                            result.cached += 1
                            continue
                        if key in waiting or key in meta:
                            result.already_submitted += 1
                            continue
                        line = client.line(key, request)
                        encoded = RequestFile.encode(line)
                        if len(part) and (len(part) >= limits.requests
                                          or part.size + len(encoded) > limits.bytes
                                          or part.url != line.get("url")):  # one endpoint a file
                            await send()
                        part.append(line, encoded)
                        meta[key] = [job.dictionary_id, job.feature, request.purpose or job.stage]
            await send()
        finally:
            part.close()
            await close_provider(provider)

    try:
        asyncio.run(main())
    except Exception as error:  # noqa: BLE001 - the SDK's error, as one sentence without the key
        raise batch_failure(error, provider, "submitting a batch") from None
    return result


def batch_rows(store: Store) -> list[dict[str, Any]]:
    """Every batch, newest first, without the per-request map."""
    frame = store.sql("SELECT batch_id, provider, model, purpose, status, request_count, run_id, "
                      "created_at, updated_at FROM batches ORDER BY created_at DESC")
    return frame.to_dicts()


def _providers(store: Store, rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], LLMProvider]:
    from featurelens.llm.providers import build_provider

    return {(p, m): build_provider(f"{p}:{m}") for p, m in {(r[1], r[2]) for r in rows}}


def refresh_status(store: Store) -> dict[str, Any]:
    """Settle interrupted submissions, then ask the providers about every open batch and
    store what they say."""
    batch_intent.reconcile(store)
    rows = store.execute(
        f"SELECT batch_id, provider, model FROM batches WHERE status NOT IN ({','.join('?' * len(CLOSED))}) "
        "AND status <> ?", [*CLOSED, batch_intent.SUBMITTING])
    if not rows:
        return {}
    providers = _providers(store, rows)

    async def main() -> dict[str, Any]:
        states = {}
        for batch_id, name, model in rows:
            states[batch_id] = await batch_client(providers[(name, model)]).state(batch_id)
        for provider in providers.values():
            await close_provider(provider)
        return states

    try:
        states = asyncio.run(main())
    except Exception as error:  # noqa: BLE001 - the SDK's error, as one sentence without the key
        raise batch_failure(error, next(iter(providers.values())), "asking for batch status") from None
    with store.transaction():
        for batch_id, state in states.items():
            store.execute("UPDATE batches SET status = ?, updated_at = current_timestamp "
                          "WHERE batch_id = ?", [state.status, batch_id])
    return states


def _download(store: Store, spec: str, batch_id: str, requests: dict[str, list[Any]],
              run_id: str | None, prices: PriceTable, state: Any = None) -> tuple[int, int, str]:
    """Results of one finished batch into llm_cache and llm_calls; ``(ok, errors, note)``,
    the note saying what was set aside (:mod:`featurelens.llm.batch.results`).

    A client per batch, opened and closed inside one event loop (an SDK client's
    connections belong to the loop that opened them)."""
    from featurelens.llm.providers import build_provider

    provider = build_provider(spec)
    client = batch_client(provider)
    ok = errors = 0

    async def main() -> list[tuple[str, Any, str | None]]:
        try:
            return [item async for item in client.results(batch_id)]
        finally:
            await close_provider(provider)

    try:
        downloaded = asyncio.run(main())
    except Exception as error:  # noqa: BLE001 - the SDK's error, as one sentence without the key
        raise batch_failure(error, provider, f"downloading batch {batch_id}") from None
    secrets = configured_secrets()
    downloaded = [(custom_id, None if response is None else scrub(response, secrets), error)
                  for custom_id, response, error in downloaded]
    found = sort_results(downloaded, requests)
    reason = unanswered_reason(getattr(state, "status", "finished"), getattr(state, "reason", ""), found)
    items = [(custom_id, *found.answers.get(custom_id, (None, reason))) for custom_id in requests]
    for chunk in batched(items, 2000):
        cache_rows, call_rows = [], []
        for custom_id, response, error in chunk:
            dictionary_id, feature, purpose = (requests.get(custom_id) or [None, None, "unknown"])
            call = {"call_id": hashlib.sha256(f"{batch_id}/{custom_id}".encode()).hexdigest()[:32],
                    "cache_key": custom_id, "provider": provider.name, "model": provider.model,
                    "purpose": purpose, "dictionary_id": dictionary_id, "feature": feature,
                    "batch_id": batch_id, "run_id": run_id, "latency_s": None}
            if response is None:
                errors += 1
                call.update(status="error", error=(error or "no result")[:2000])
            else:
                ok += 1
                cache_rows.append({"cache_key": custom_id, "response": cache.response_to_json(response)})
                call.update(status="ok", error=None, input_tokens=response.input_tokens,
                            cached_input_tokens=response.cached_input_tokens,
                            output_tokens=response.output_tokens,
                            cost_usd=prices.cost(provider.name, provider.model, response.input_tokens,
                                                 response.output_tokens, response.cached_input_tokens,
                                                 batch=True))
            call_rows.append(call)
        with store.transaction():
            store.insert("llm_cache", pl.DataFrame(cache_rows), on_conflict="ignore")
            store.insert("llm_calls", pl.DataFrame(call_rows, infer_schema_length=None),
                         on_conflict="ignore")
    return ok, errors, found.note()


def collect(store: Store, finishers: Mapping[str, Finisher], *, prices: PriceTable | None = None,
            progress: bool = True) -> list[str]:
    """Download finished batches and finish the runs that were waiting on them with
    ``finishers[run kind]``."""
    prices = prices or PriceTable.load()
    lines: list[str] = batch_intent.reconcile(store)
    states = refresh_status(store)
    open_rows = store.execute(
        "SELECT batch_id, provider, model, CAST(requests AS VARCHAR), run_id FROM batches "
        f"WHERE status NOT IN ({','.join('?' * len(CLOSED))})", list(CLOSED))
    for batch_id, name, model, requests, run_id in open_rows:
        state = states.get(batch_id)
        if state is None or not state.finished:
            lines.append(f"batch {batch_id}: {state.status if state else 'unknown'}, not finished "
                         f"yet ({state.counts if state else ''}).")
            continue
        keys = request_map(requests)
        if keys is None:
            store.execute("UPDATE batches SET status = 'damaged', updated_at = current_timestamp "
                          "WHERE batch_id = ?", [batch_id])
            lines.append(_damaged_row(batch_id) + "; its run's other answers are written.")
            continue
        ok, errors, note = _download(store, f"{name}:{model}", batch_id, keys, run_id, prices, state)
        store.execute("UPDATE batches SET status = 'collected', updated_at = current_timestamp "
                      "WHERE batch_id = ?", [batch_id])
        ended = f" (the batch ended '{state.status}': {state.reason})" if state.reason else ""
        lines.append(f"batch {batch_id}: collected {ok:,} answers, {errors:,} errors{ended}"
                     + (f"; {note}." if note else "."))
    waiting_runs = {r[0] for r in store.execute(
        f"SELECT DISTINCT run_id FROM batches WHERE status NOT IN ({','.join('?' * len(CLOSED))})",
        list(CLOSED))}
    finished_runs = {r[0] for r in store.execute(
        "SELECT DISTINCT b.run_id FROM batches b JOIN runs r USING (run_id) "
        "WHERE r.status = 'running'")}
    for run_id in sorted(finished_runs - waiting_runs):
        found = run_config(store, run_id)
        if found is None or found[0] not in finishers:
            lines.append(f"run {run_id}: its answers are cached; rerun its command to write them.")
            continue
        stats = finishers[found[0]](store, found[1], prices, progress)
        lines.append(f"run {run_id}: wrote {stats.succeeded:,} results from the batch answers, "
                     f"{stats.failed:,} failed (see the failures table).")
        lines.extend(getattr(stats, "notes", None) or [])  # a chained run says what comes next
    return lines
