"""The driver's side of a sharded extraction: hand out shards, collect partials, commit.

Workers carry one state across their shards (:mod:`featurelens.scale.carried`) and
send a partial only when the driver sends them a *flush*: all workers at once, when a
checkpoint is due and at the end (a "round"). So the driver's hot path is cutting
shards, sending them and writing sequence rows; it merges a few partials per
checkpoint instead of one per shard.

What the driver commits is always a prefix of the shards: after a round's partials
are merged, the merged shards are exactly ``0..B-1`` for the round's boundary ``B``,
and that state is the checkpoint. A worker that dies loses what it carried since its
last flush: its flush (or the flush after it restarted) names the shards it holds,
and the driver reduces the missing ones again, each in a state of its own that comes
back at once, so a redone window never meets later windows in a carried state.
Ray's own task retries are off (``max_task_retries=0``) for that reason: the driver,
not Ray, decides what is redone, so no shard is merged twice.

Results are handled per worker in the order they were sent, so "the shards a worker
acknowledged since its last flush" is exact when the next flush comes back.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction.extractor import SEQUENCE_FLUSH, _checkpoint
from featurelens.core.extraction.packing import Window
from featurelens.core.extraction.state import ExtractionState
from featurelens.core.extraction.writer import TokenText, sequence_rows
from featurelens.core.store.database import Store
from featurelens.scale.cluster import ClusterError

#: Shards sent to a worker and not yet acknowledged: one running, one queued, so a
#: worker never waits on the driver.
IN_FLIGHT_PER_WORKER = 2
#: A restarting actor (Ray refuses its calls until it is back) is asked again after this.
RESTART_POLL_S = 1.0
#: ... and given up after being unavailable this long (its node is gone for good).
RESTART_GIVE_UP_S = 600.0


def cut_shards(batches: Iterator[list[Window]], skip: int, size: int) -> Iterator[tuple[int, list[Window]]]:
    """``(batches in shard, windows)`` for consecutive shards after the first ``skip`` batches."""
    remaining = itertools.islice(batches, skip, None)
    while True:
        group = list(itertools.islice(remaining, size))
        if not group:
            return
        yield len(group), [window for batch in group for window in batch]


def failure(error: BaseException, shard: int) -> ClusterError:
    """One sentence for a worker that failed for good."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, FeaturelensError):
        return ClusterError(f"A Ray worker failed: {cause}")
    text = str(cause or error).strip().splitlines()
    detail = text[-1] if text else type(error).__name__
    return ClusterError(f"A Ray worker failed on shard {shard} after its retries ({detail}); "
                        "check the worker logs (ray logs) and rerun the same command to resume.")


@dataclass
class Shard:
    tokens: np.ndarray
    seq_ids: np.ndarray
    batches_through: int  #: batches of the run up to and including this shard
    n_windows: int
    failures: int = 0


@dataclass
class Call:
    kind: str  #: "carry" (fold into the carried state), "alone" (bytes back at once) or "flush"
    ref: Any
    shard: int  #: -1 for a flush
    generation: int  #: the worker's failure count when sent: one death fails many calls


@dataclass
class Worker:
    actor: Any
    calls: deque[Call] = field(default_factory=deque)
    acked: list[int] = field(default_factory=list)  #: carried shards acknowledged since the last flush
    deaths: int = 0
    alive: bool = True
    back_at: float = 0.0  #: restarting: no calls before this (time.monotonic())
    unavailable_since: float | None = None  #: when its calls started to be refused, if they are

    def reducing(self) -> int:
        return sum(call.kind != "flush" for call in self.calls)


@dataclass
class Flow:
    """What the stream did (the driver's view)."""

    n_seen: int
    model_seconds: float
    pending: list[Window]  #: windows whose sequences are not written yet
    shards: int  #: shards merged
    redone: int  #: shards reduced again because the worker holding them died


@dataclass
class Run:
    """Where the merged state is committed: the extraction's store, run and checkpoint files."""

    db: Store
    plan: Any
    folder: Path
    seq_floor: int
    text: TokenText
    checkpoint_seconds: float
    checkpoint_every: int | None


def stream(ray: Any, actors: list[Any], run: Run, state: ExtractionState, shards: Iterator[tuple[int, list[Window]]],
           done_batches: int, batch_size: int, bar: tqdm, max_retries: int,
           merge: Callable[[ExtractionState, bytes], None], total_shards: int | None = None) -> Flow:
    """Reduce ``shards`` on ``actors`` into ``state``, committing prefixes as checkpoints.

    ``total_shards`` (at most how many ``shards`` holds) lets the driver ask for the
    partials once before the end (:func:`early_round_at`), so it merges their bulk while
    the workers reduce their last shards instead of after.
    """
    return _Driver(ray, actors, run, state, shards, done_batches, batch_size, bar, max_retries, merge,
                   total_shards).run()


def early_round_at(total_shards: int | None, workers: int) -> int | None:
    """After how many shards sent the driver asks every worker for its partial once more
    before the last round (no commit): when about one shard per worker is left to send.

    Without it the last partials, everything since the last checkpoint, are serialised,
    shipped and merged one after the other once the last shard is done (at 9216 latents
    about 0.5 s per run, BENCHMARKS.md). After it the last partials hold only the windows
    the last shards brought in.
    """
    if total_shards is None or total_shards - workers < 1:
        return None
    return total_shards - workers


class _Driver:
    def __init__(self, ray: Any, actors: list[Any], run: Run, state: ExtractionState,
                 shards: Iterator[tuple[int, list[Window]]], done_batches: int, batch_size: int, bar: tqdm,
                 max_retries: int, merge: Callable[[ExtractionState, bytes], None],
                 total_shards: int | None = None):
        self.ray, self.run_, self.state, self.source, self.bar = ray, run, state, shards, bar
        self.workers = [Worker(actor) for actor in actors]
        self.max_retries, self.merge_bytes = max_retries, merge
        self.context = state.context
        self.records: dict[int, Shard] = {}
        self.redo: deque[int] = deque()
        self.merged: set[int] = set()
        self.boundaries: set[int] = set()
        self.committed = 0
        self.sent = 0  #: shards cut and sent so far
        self.batches = done_batches
        self.n_seen = done_batches * batch_size
        self.exhausted = False
        self.pending: list[Window] = []
        self.model_seconds = self.checkpoint_cost = 0.0
        self.redone = 0
        self.since_round = 0  #: batches sent since the last round
        self.last_round = time.monotonic()
        self.early_round = early_round_at(total_shards, len(actors))

    # -- sending ------------------------------------------------------------------------
    def _live(self) -> list[Worker]:
        live = [worker for worker in self.workers if worker.alive]
        if not live:
            raise ClusterError("Every Ray worker died more often than --max-retries allows; check the "
                               "worker logs (ray logs) and rerun the same command to resume.")
        return live

    def _send(self, worker: Worker, kind: str, shard: int = -1) -> None:
        if kind == "flush":
            ref = worker.actor.flush.remote()
        else:
            record = self.records[shard]
            ref = worker.actor.reduce_shard.remote(record.tokens, record.seq_ids, shard, kind == "carry")
        worker.calls.append(Call(kind, ref, shard, worker.deaths))

    def _round(self, commit: bool = True) -> None:
        """Ask every worker for its partial; with ``commit`` the shards sent so far are
        committed once merged (not at the very end: the final transaction follows)."""
        for worker in self._live():
            self._send(worker, "flush")
        if commit:
            self.boundaries.add(self.sent)
        self.since_round, self.last_round = 0, time.monotonic()

    def _due(self) -> bool:
        run = self.run_
        if run.checkpoint_every:
            return self.since_round >= run.checkpoint_every
        return time.monotonic() - self.last_round >= max(run.checkpoint_seconds, 20 * self.checkpoint_cost)

    def _fill(self) -> None:
        """Send redone shards first, then new ones, while some worker has room."""
        while True:
            now = time.monotonic()
            live = [w for w in self._live() if w.reducing() < IN_FLIGHT_PER_WORKER and w.back_at <= now]
            if not live:
                return
            worker = min(live, key=Worker.reducing)
            if self.redo:
                self.redone += 1
                self._send(worker, "alone", self.redo.popleft())
                continue
            if self.exhausted:
                return
            shard = next(self.source, None)
            if shard is None:
                self.exhausted = True
                if self.sent not in self.boundaries and self.sent > 0:
                    self._round(commit=False)  # the last partials
                return
            n_batches, windows = shard
            self.batches += n_batches
            self.records[self.sent] = Shard(np.asarray([w.tokens for w in windows], dtype=np.int32),
                                            np.asarray([w.sequence_id for w in windows], dtype=np.int64),
                                            self.batches, len(windows))
            self._send(worker, "carry", self.sent)
            self.sent += 1
            self.n_seen += len(windows)
            self._sequences(windows)
            self.since_round += n_batches
            if self._due():
                self._round()
            elif self.sent == self.early_round:  # the bulk merged while the last shards run
                self._round(commit=False)

    def _sequences(self, windows: list[Window]) -> None:
        """Sequence rows are idempotent: written as shards are cut, not when merged."""
        self.pending.extend(windows)
        if len(self.pending) >= SEQUENCE_FLUSH:
            run = self.run_
            run.db.insert("sequences", sequence_rows(self.pending, run.plan.corpus_id, run.plan.lm.model_id,
                                                     run.text), on_conflict="ignore")
            self.pending = []

    # -- receiving ----------------------------------------------------------------------
    def run(self) -> Flow:
        while True:
            self._fill()
            refs = [call.ref for worker in self.workers for call in worker.calls]
            if not refs:
                if self.redo:  # every worker that could take it is restarting
                    time.sleep(self._until_back() or 0.0)
                    continue
                break
            self.ray.wait(refs, num_returns=1, timeout=self._until_back())
            # everything ready now: results are taken per worker in the order sent
            ready_ids = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0])
            for worker in self.workers:
                while worker.calls and worker.calls[0].ref in ready_ids:
                    self._receive(worker, worker.calls.popleft())
        if len(self.merged) != self.sent:
            raise ClusterError(f"Only {len(self.merged)} of {self.sent} shards came back from the Ray "
                               "workers; rerun the same command to resume.")
        return Flow(self.n_seen, self.model_seconds, self.pending, len(self.merged), self.redone)

    def _receive(self, worker: Worker, call: Call) -> None:
        from ray.exceptions import ActorUnavailableError, RayActorError

        try:
            result = self.ray.get(call.ref)
        except ActorUnavailableError:
            self._unavailable(worker, call)
            return
        except RayActorError:
            self._died(worker, call)
            return
        except Exception as error:  # noqa: BLE001 - Ray wraps whatever the worker raised
            raise failure(error, call.shard) from None
        worker.unavailable_since = None
        if call.kind == "flush":
            data, held = result
            lost = set(worker.acked) - set(held)
            if not set(held) <= set(worker.acked):
                raise ClusterError("A Ray worker sent back shards it was not known to hold; rerun the "
                                   "same command to resume from the last checkpoint.")
            worker.acked = []
            self._merge(data, held)
            self._lose(sorted(lost))
            return
        data, seconds = result
        self.model_seconds += seconds
        self.bar.update(self.records[call.shard].n_windows * self.context)
        if call.kind == "carry" and not worker.alive:  # it answered after being given up: never flushed
            self._lose([call.shard])
        elif call.kind == "carry":
            worker.acked.append(call.shard)
        else:
            self._merge(data, [call.shard])

    def _until_back(self) -> float | None:
        """Seconds until the next restarting worker may be asked again (None: none is)."""
        now = time.monotonic()
        waits = [w.back_at - now for w in self.workers if w.alive and w.back_at > now]
        return max(0.0, min(waits)) if waits else None

    def _unavailable(self, worker: Worker, call: Call) -> None:
        """Ray refused the call: the actor is restarting after a death already seen (or
        about to be seen by its in-flight calls). Nothing ran, so no death and no shard
        failure is counted; what the call held is redone and the worker rests a moment."""
        now = time.monotonic()
        worker.unavailable_since = worker.unavailable_since or now
        worker.back_at = now + RESTART_POLL_S
        if now - worker.unavailable_since > RESTART_GIVE_UP_S:
            worker.alive = False
        if call.kind == "flush" or not worker.alive:
            self._lose(worker.acked)
            worker.acked = []
        if call.kind != "flush":
            self.redo.append(call.shard)

    def _died(self, worker: Worker, call: Call) -> None:
        """A call failed because its worker died: redo what the worker lost."""
        if call.generation == worker.deaths:  # the first failure of this death
            worker.deaths += 1
            if worker.deaths > self.max_retries:
                worker.alive = False
        if call.kind == "flush" or not worker.alive:
            self._lose(worker.acked)
            worker.acked = []
        if call.kind != "flush":
            record = self.records[call.shard]
            record.failures += 1
            if record.failures > self.max_retries:
                raise ClusterError(f"Shard {call.shard} failed on {record.failures} Ray workers in a row; "
                                   "check the worker logs (ray logs) and rerun the same command to resume.")
            self.redo.append(call.shard)

    def _lose(self, shards: list[int]) -> None:
        for shard in shards:
            self.bar.update(-self.records[shard].n_windows * self.context)
            self.redo.append(shard)

    def _merge(self, data: bytes, shards: list[int]) -> None:
        self.merge_bytes(self.state, data)
        self.merged.update(shards)
        for shard in shards:
            record = self.records[shard]
            record.tokens = record.seq_ids = np.empty(0, dtype=np.int64)  # no longer needed for a redo
        prefix = len(self.merged)  # distinct indices from 0: a prefix exactly when the largest is prefix - 1
        if prefix in self.boundaries and prefix > self.committed and max(self.merged) == prefix - 1:
            self._commit(prefix)

    def _commit(self, prefix: int) -> None:
        run, before = self.run_, time.monotonic()
        _checkpoint(run.db, run.folder, run.plan.run, run.plan.config, self.state,
                    self.records[prefix - 1].batches_through, run.seq_floor, self.pending, run.plan.corpus_id,
                    run.plan.lm.model_id, run.text)
        for shard in [shard for shard in self.records if shard < prefix - 1]:  # merged, committed: done with
            del self.records[shard]
        self.pending, self.committed = [], prefix
        self.checkpoint_cost = time.monotonic() - before
