"""Intent before submit: a provider batch is recorded before it is created.

A process killed after the provider created a batch but before featurelens stored its
id would leave no trace, and the rerun would submit (and pay for) the same requests
again. So each batch is first written as a ``submitting`` row under a local placeholder
id (``featurelens-<uuid4>``), committed, and only then created; the placeholder travels
with the batch (OpenAI: ``metadata.featurelens_submission`` and the uploaded file's
name) so it can be found again. On success the row takes the provider's id.

Every later submission, ``batches status`` and ``batches collect`` first reconciles the
``submitting`` rows with what the provider holds: the batch that carries the placeholder
(OpenAI), or the one batch created since the row with the same number of requests that
no row of ours names (Anthropic keeps no metadata). Found: the row adopts it. Nothing:
the create never happened, the row goes and its requests are sent again. Several
candidates, or a provider that cannot be asked: nothing is sent again and the user is
told, in one sentence, how to decide (``batches adopt`` / ``batches forget``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import polars as pl

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMProvider, close_provider
from featurelens.core.redaction import redact
from featurelens.core.store.database import Store
from featurelens.llm.retry import describe, http_status

SUBMITTING = "submitting"
PREFIX = "featurelens-"
#: The OpenAI batch metadata key that carries the placeholder.
METADATA_KEY = "featurelens_submission"
#: How far before the row's time a provider's batch may claim to have been created
#: (clock skew between this machine and the provider's).
MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class Intent:
    """A ``submitting`` row: a batch that may or may not exist at the provider."""

    placeholder: str
    provider: str
    model: str
    request_count: int
    created_at: datetime  #: UTC, naive as DuckDB returns it

    @property
    def spec(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def since(self) -> float:
        """Epoch seconds before which no batch of this submission can have been created."""
        return (self.created_at.replace(tzinfo=timezone.utc) - MARGIN).timestamp()


def record_intent(store: Store, provider: LLMProvider, *, purpose: str, run_id: str,
                  request_count: int, requests: dict[str, list[Any]]) -> str:
    """Write and commit a ``submitting`` row before the provider is asked; its placeholder."""
    placeholder = f"{PREFIX}{uuid.uuid4()}"
    with store.transaction():
        store.insert("batches", pl.DataFrame([{
            "batch_id": placeholder, "provider": provider.name, "model": provider.model,
            "purpose": purpose, "status": SUBMITTING, "request_count": request_count,
            "requests": json.dumps(requests), "run_id": run_id, "created_at": _utc_now()}]))
    return placeholder


def confirm(store: Store, placeholder: str, batch_id: str) -> None:
    """The placeholder row becomes the provider's batch ``batch_id`` (one transaction;
    DuckDB cannot update a primary key column in place, so delete and insert)."""
    with store.transaction():
        frame = store.sql("SELECT * FROM batches WHERE batch_id = ?", [placeholder])
        if frame.is_empty():
            raise FeaturelensError(f"There is no batch submission {placeholder} in this store; "
                                   "`featurelens batches status --no-refresh` lists them.")
        store.execute("DELETE FROM batches WHERE batch_id = ?", [placeholder])
        store.insert("batches", frame.with_columns(
            pl.lit(batch_id).alias("batch_id"), pl.lit("submitted").alias("status"),
            pl.lit(_utc_now()).alias("updated_at")))


def drop(store: Store, placeholder: str) -> None:
    """Remove a submission that never reached the provider: its requests go out again."""
    with store.transaction():
        store.execute("DELETE FROM batches WHERE batch_id = ? AND status = ?", [placeholder, SUBMITTING])


def not_created(error: BaseException) -> BaseException:
    """Mark ``error`` as raised before any create call left (a batch client's own step,
    such as OpenAI's file upload), so the submission is dropped at once."""
    setattr(error, "featurelens_batch_not_created", True)
    return error


def surely_not_created(error: BaseException) -> bool:
    """Whether a failed submission certainly made no batch: it failed before the create
    call, or the provider answered the create with a 4xx refusal. Without an answer (a
    dropped connection, a timeout, a kill) or with a 5xx the batch may exist, so the row
    stays for reconciliation to decide."""
    if getattr(error, "featurelens_batch_not_created", False):
        return True
    status = http_status(error)
    return status is not None and 400 <= status < 500


def intents(store: Store, provider: LLMProvider | None = None) -> list[Intent]:
    """The ``submitting`` rows, oldest first (of ``provider``'s model only, when given)."""
    query = ("SELECT batch_id, provider, model, request_count, created_at FROM batches "
             "WHERE status = ?")
    params: list[Any] = [SUBMITTING]
    if provider is not None:
        query += " AND provider = ? AND model = ?"
        params += [provider.name, provider.model]
    return [Intent(*row) for row in store.execute(query + " ORDER BY created_at, batch_id", params)]


async def find_candidates(store: Store, pending: list[Intent],
                          client_for: Callable[[Intent], Any]) -> dict[str, list[str]]:
    """For each pending submission, the provider batches that may be it. A provider that
    cannot be asked raises one sentence; no row has been changed."""
    named = {row[0] for row in store.execute("SELECT batch_id FROM batches")}
    found: dict[str, list[str]] = {}
    for intent in pending:
        try:
            ids = await client_for(intent).find(intent.placeholder, intent.since, intent.request_count)
        except FeaturelensError:
            raise
        except Exception as error:  # noqa: BLE001 - the SDK's error, as one sentence without the key
            raise FeaturelensError(
                f"Could not ask {intent.spec} whether batch submission {intent.placeholder} "
                f"({intent.request_count:,} requests) reached it ({redact(describe(error))}); the "
                "submission is kept and none of its requests is sent again until it can be checked: "
                "run the same command again once the provider answers.") from None
        found[intent.placeholder] = [i for i in dict.fromkeys(ids) if i not in named]
    return found


def settle(store: Store, pending: list[Intent], found: dict[str, list[str]]) -> list[str]:
    """Adopt or drop every submission whose fate is clear; one sentence refusing the
    first ambiguous one (after the clear ones are settled). Returns what was done."""
    lines: list[str] = []
    # a batch that could be either of two submissions of the same size settles neither
    claims = Counter(c for ids in found.values() for c in ids)
    ambiguous: list[tuple[Intent, list[str]]] = []
    for intent in pending:
        candidates = found.get(intent.placeholder, [])
        if len(candidates) == 1 and claims[candidates[0]] == 1:
            confirm(store, intent.placeholder, candidates[0])
            lines.append(f"batch submission {intent.placeholder} had reached {intent.spec} as batch "
                         f"{candidates[0]}; recorded it (nothing sent again).")
        elif not candidates:
            drop(store, intent.placeholder)
            lines.append(f"batch submission {intent.placeholder} never reached {intent.spec}; its "
                         f"{intent.request_count:,} requests are sent again.")
        else:
            ambiguous.append((intent, candidates))
    if ambiguous:
        intent, candidates = ambiguous[0]
        which = (f"may be any of the provider's batches {', '.join(candidates)}" if len(candidates) > 1
                 else f"may be the provider's batch {candidates[0]}, which another pending submission "
                      "of the same size may be too")
        raise FeaturelensError(
            f"Batch submission {intent.placeholder} ({intent.request_count:,} requests to {intent.spec}, "
            f"recorded {intent.created_at:%Y-%m-%d %H:%M:%S} UTC) {which}, so nothing was sent again: "
            "check them in the provider's console, "
            f"then run `featurelens batches adopt {intent.placeholder} BATCH_ID` for the one it is, or "
            f"`featurelens batches forget {intent.placeholder}` if it is none of them.")
    return lines


async def reconcile_with(store: Store, provider: LLMProvider) -> list[str]:
    """Reconcile ``provider``'s model's submissions inside the caller's event loop."""
    from featurelens.llm.batch.clients import batch_client

    pending = intents(store, provider)
    if not pending:
        return []
    client = batch_client(provider)
    return settle(store, pending, await find_candidates(store, pending, lambda _: client))


def reconcile(store: Store) -> list[str]:
    """Reconcile every ``submitting`` row of the store (each provider asked once per row)."""
    pending = intents(store)
    if not pending:
        return []
    found = _run_with_providers({(i.provider, i.model) for i in pending},
                                lambda clients: find_candidates(
                                    store, pending, lambda i: clients[(i.provider, i.model)]))
    return settle(store, pending, found)


def adopt(store: Store, placeholder: str, batch_id: str) -> str:
    """``batches adopt``: the user says which provider batch a submission became."""
    intent = _intent(store, placeholder)
    if store.execute("SELECT 1 FROM batches WHERE batch_id = ?", [batch_id]):
        raise FeaturelensError(f"Batch {batch_id} is already recorded in this store; adopt a batch "
                               f"no row names, or `featurelens batches forget {placeholder}`.")

    async def check(clients: dict[tuple[str, str], Any]) -> Any:
        return await clients[(intent.provider, intent.model)].state(batch_id)

    try:
        state = _run_with_providers({(intent.provider, intent.model)}, check)
    except FeaturelensError:
        raise
    except Exception as error:  # noqa: BLE001 - the SDK's error, as one sentence without the key
        status = http_status(error)
        what = (f"{intent.spec} knows no batch {batch_id}" if status == 404
                else f"{intent.spec} could not be asked about batch {batch_id} ({redact(describe(error))})")
        raise FeaturelensError(f"{what}; nothing was changed: check the id and run the same command "
                               "again.") from None
    confirm(store, placeholder, batch_id)
    return (f"batch submission {placeholder} is batch {batch_id} ({state.status}); "
            "`featurelens batches collect` will download it when it is done.")


def forget(store: Store, placeholder: str) -> str:
    """``batches forget``: the user says a submission never became a provider batch."""
    intent = _intent(store, placeholder)
    drop(store, placeholder)
    return (f"forgot batch submission {placeholder}; its {intent.request_count:,} requests are sent "
            "again by the next submission of the same command.")


def _intent(store: Store, placeholder: str) -> Intent:
    rows = store.execute("SELECT batch_id, provider, model, request_count, created_at, status "
                         "FROM batches WHERE batch_id = ?", [placeholder])
    if not rows or rows[0][5] != SUBMITTING:
        raise FeaturelensError(
            f"{placeholder} is not a pending batch submission of this store"
            + (f" (it is a batch with status {rows[0][5]})" if rows else "")
            + "; `featurelens batches status --no-refresh` lists the submissions (status submitting).")
    return Intent(*rows[0][:5])


def _run_with_providers(keys: set[tuple[str, str]],
                        work: Callable[[dict[tuple[str, str], Any]], Awaitable[Any]]) -> Any:
    """Build a provider per ``(name, model)``, run ``work(batch clients)`` in one event loop
    and close the providers inside it (an SDK client belongs to the loop that opened it)."""
    from featurelens.llm.batch.clients import batch_client
    from featurelens.llm.providers import build_provider

    providers = {key: build_provider(f"{key[0]}:{key[1]}") for key in sorted(keys)}

    async def main() -> Any:
        try:
            return await work({key: batch_client(p) for key, p in providers.items()})
        finally:
            for provider in providers.values():
                await close_provider(provider)

    return asyncio.run(main())


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
