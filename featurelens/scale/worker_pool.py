"""Ray and the extraction workers: started while the driver prepares, stopped while it finishes.

A sharded extraction pays fixed costs an in-process run does not: Ray's start (GCS,
raylet and their helpers, seconds), each worker's process start, imports and model
load, and Ray's shutdown (about a second). None of them needs the driver's model, so
they overlap the driver's own work instead of adding to it:

- :func:`start_while_preparing` runs the driver's ``prepare`` (its model, dictionary
  and corpus) in a thread while the main thread starts or joins Ray and creates the
  actors, which load their models at the same time;
- after the stream, :meth:`WorkerPool.close_in_background` kills the actors at once
  (their memory is free for the finish phase) and shuts Ray down in a thread while the
  driver computes logit effects and writes the store; :meth:`WorkerPool.close` waits
  for it (and is what every error path calls).

Workers are built from the run's spec alone (the excluded token ids they find with
their own tokenizer), so nothing they need waits for ``prepare``; the driver checks
their ids against its own once both are ready.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray.address import check_fits
from featurelens.core.ray.runtime import connect, require_ray
from featurelens.scale.extract_worker import ShardReducer

T = TypeVar("T")


@dataclass
class WorkerPool:
    """The actors of one sharded extraction, and whether this run owns the Ray connection."""

    ray: Any
    owns_connection: bool  #: this run started (or joined) Ray, so it shuts the connection down
    actors: list[Any] = field(default_factory=list)
    start_seconds: float = 0.0  #: connecting and creating the actors (not their model loading)
    prepare_seconds: float = 0.0  #: the driver's prepare, in its thread beside the start
    stop_seconds: float = 0.0  #: Ray's shutdown (in a thread beside the finish phase, after a normal run)
    _closer: threading.Thread | None = None
    _closed: bool = False

    def _kill(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def close_in_background(self) -> None:
        """Kill the actors now; shut Ray down in a thread (joined by :meth:`close`)."""
        if self._closed or self._closer is not None:
            return
        self._kill()
        if self.owns_connection:
            self._closer = threading.Thread(target=self._shutdown, name="featurelens-ray-shutdown", daemon=True)
            self._closer.start()

    def _shutdown(self) -> None:
        began = time.perf_counter()
        self.ray.shutdown()
        self.stop_seconds = time.perf_counter() - began

    def close(self) -> None:
        """Kill the actors and shut down the connection this run made; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._closer is not None:
            self._closer.join()
            return
        try:
            self._kill()
        finally:
            if self.owns_connection:
                self._shutdown()


def start_while_preparing(prepare: Callable[[], T], *, address: str | None, workers: int, threads: int,
                          gpus: float | None, worker_spec: dict[str, Any], max_retries: int
                          ) -> tuple[T, WorkerPool]:
    """``prepare()`` in a thread while Ray starts and ``workers`` actors begin loading.

    Returns what ``prepare`` returned and the pool. If either side fails, the pool is
    closed and the error raised; the driver's (bad input: the user's first fix) wins
    over the cluster's.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        began = time.perf_counter()
        try:
            outcome["plan"] = prepare()
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            outcome["error"] = error
        outcome["seconds"] = time.perf_counter() - began

    preparing = threading.Thread(target=run, name="featurelens-prepare", daemon=True)
    preparing.start()
    pool: WorkerPool | None = None
    try:
        began = time.perf_counter()
        owns = connect(address, workers * threads)
        pool = WorkerPool(require_ray(), owns)
        ray = pool.ray
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        check_fits(ray.cluster_resources(), workers, threads, gpus)
        # the driver, not Ray, redoes the shards a dead worker carried (shard_flow): no task retries
        actor_class = ray.remote(ShardReducer).options(
            num_cpus=threads, num_gpus=gpus, max_restarts=max_retries, max_task_retries=0)
        pool.actors = [actor_class.remote(worker_spec, threads) for _ in range(workers)]
        pool.start_seconds = time.perf_counter() - began
    except BaseException:
        preparing.join()
        if pool is not None:
            pool.close()
        if isinstance(outcome.get("error"), FeaturelensError):
            raise outcome["error"] from None
        raise
    preparing.join()
    if "error" in outcome:
        pool.close()
        raise outcome["error"]
    pool.prepare_seconds = outcome["seconds"]
    return outcome["plan"], pool
