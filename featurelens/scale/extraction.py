"""Sharded extraction on Ray, into one store identical to an in-process run's.

The driver does what :func:`featurelens.core.extraction.extract` does before and after
the stream (the same :func:`prepare`, run id, resume rule, checkpoint files and final
transaction), so the two executors are interchangeable: a run started in-process can
be resumed on Ray and the other way round. Only the stream differs:

- Ray and the workers start while the driver loads its model, and Ray shuts down while
  the driver finishes (:mod:`featurelens.scale.worker_pool`);
- the driver packs windows and cuts them into shards of ``shard_batches`` whole
  batches (so per-batch rules like the outlier median see the same batches);
- each Ray actor (:class:`ShardReducer`, one per GPU or per ``threads`` CPUs) folds its
  shards into one state it carries, and sends a partial as bytes through the object
  store when the driver asks: when a checkpoint is due and at the end;
- the driver merges the partials (core.extraction.merge) and commits a checkpoint of
  the merged prefix of shards (:mod:`featurelens.scale.shard_flow`), so a killed
  driver resumes from its last commit and a killed worker costs only the shards it
  carried since its last partial, which the driver has reduced again.

Only the driver opens the DuckDB file: DuckDB allows one writing process.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction import resume
from featurelens.core.extraction.extractor import (
    ExtractResult,
    ExtractSpec,
    _finish,
    _undo,
    prepare,
    settings_of,
)
from featurelens.core.extraction.packing import Window
from featurelens.core.extraction.state import ExtractionState, state_device
from featurelens.core.extraction.writer import TokenText
from featurelens.core.ray.address import check_address, check_workers
from featurelens.core.store.argument import StoreLike, using_store
from featurelens.core.store.database import Store
from featurelens.scale import shard_flow
from featurelens.scale.cluster import ClusterError, require_ray
from featurelens.scale.partial import merge_bytes
from featurelens.scale.shard_flow import failure as _failure
from featurelens.scale.worker_pool import WorkerPool, start_while_preparing


@dataclass
class RayExtractResult(ExtractResult):
    """What a sharded extraction did, plus where its workers ran."""

    worker_nodes: list[str] = field(default_factory=list)  #: Ray node id of each worker, at start
    shards: int = 0  #: shards reduced and merged by this call
    #: of stream_seconds, waiting for workers still loading their models when the driver was ready
    startup_seconds: float = 0.0
    redone_shards: int = 0  #: shards reduced again because the worker carrying them died
    prepare_seconds: float = 0.0  #: the driver loading model, dictionary and corpus (Ray started meanwhile)
    ray_start_seconds: float = 0.0  #: starting or joining Ray and creating the actors, beside prepare
    ray_stop_seconds: float = 0.0  #: Ray's shutdown, beside the finish phase (0 on a joined cluster)


@dataclass
class _Streamed:
    n_seen: int
    model_seconds: float
    pending: list[Window]  #: windows whose sequences are not written yet
    nodes: list[str]
    shards: int
    startup_seconds: float
    redone: int


#: How the driver folds a worker's bytes into its state (a module attribute, so a test can
#: interrupt the driver between merges).
merge_partial = merge_bytes

def extract_on_ray(spec: ExtractSpec, *, store: StoreLike = None, checkpoint_seconds: float = 60.0,
                   checkpoint_every: int | None = None, progress: bool = True, workers: int = 2,
                   address: str | None = None, threads: int = 1, gpus: float | None = None,
                   shard_batches: int = 8, max_retries: int = 3) -> ExtractResult:
    """:func:`featurelens.core.extraction.extract` with the stream spread over Ray actors.

    ``workers`` actors of ``threads`` CPUs each (``gpus`` GPUs each: default one when
    the cluster has GPUs) reduce shards of ``shard_batches`` batches. ``address`` joins
    an existing cluster (``auto``, ``HOST:PORT``); without it a local one is started and
    stopped. ``spec.model`` and ``spec.dictionary`` must be loadable on every node (same
    paths). ``checkpoint_every`` counts batches, as in-process; commits fall on shard
    boundaries.
    """
    if workers < 1 or threads < 1 or shard_batches < 1 or max_retries < 0:
        raise FeaturelensError("--workers, threads and shard size must be at least 1; fix the option.")
    check_workers(workers, threads, local=address is None)
    require_ray()  # before the model loads: a missing extra is one sentence, at once
    check_address(address)  # nothing there: one sentence in seconds, not ray.init's long wait
    started = time.perf_counter()
    worker_spec = {"model": spec.model, "backend": spec.backend, "dtype": spec.dtype, "device": spec.device,
                   "dictionary": spec.dictionary, "dictionary_name": spec.dictionary_name,
                   "hookpoint": spec.hookpoint, "context": spec.context, "batch_size": spec.batch_size,
                   "include_special": spec.include_special,
                   "exclude_outlier_norm": spec.exclude_outlier_norm, "settings": asdict(settings_of(spec))}
    # Ray starts and the workers load their models while the driver loads its own (worker_pool)
    plan, pool = start_while_preparing(lambda: prepare(spec), address=address, workers=workers,
                                       threads=threads, gpus=gpus, worker_spec=worker_spec,
                                       max_retries=max_retries)
    try:
        return _run(spec, plan, pool, store, started, checkpoint_seconds, checkpoint_every, progress, workers,
                    shard_batches, max_retries)
    finally:
        pool.close()  # after a normal run: waits for the shutdown begun before the finish phase


def _run(spec: ExtractSpec, plan: Any, pool: WorkerPool, store: StoreLike, started: float,
         checkpoint_seconds: float, checkpoint_every: int | None, progress: bool, workers: int,
         shard_batches: int, max_retries: int) -> RayExtractResult:
    lm, sae = plan.lm, plan.sae
    with using_store(store) as db:  # a path, or a store the caller holds open
        folder = resume.checkpoint_dir(db.path, plan.run)
        row = db.execute("SELECT status, progress FROM runs WHERE run_id = ?", [plan.run])
        if row and row[0][0] == "done":
            resume.remove_checkpoints(folder)
            return RayExtractResult(plan.run, plan.dict_id, plan.corpus_id, lm.model_id, 0, 0, 0, True,
                                    time.perf_counter() - started)
        state = ExtractionState(sae.d_sae, spec.context, plan.settings,
                                state_device(sae.d_sae, plan.settings, lm.device))
        done_batches, seq_floor = resume.restore(db, folder, row[0][1] if row else None, state,
                                                 plan.corpus_id, state.device)
        text = TokenText(lm.tokenizer)
        bar = tqdm(total=plan.n_windows * spec.context,
                   initial=min(done_batches * spec.batch_size, plan.n_windows) * spec.context, unit="tok",
                   unit_scale=True, desc=f"extract {plan.hookpoint} (ray x{workers})", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True)
        stream_start = time.monotonic()
        try:
            streamed = _dispatch(pool.ray, pool.actors, db, plan, state, folder, seq_floor, done_batches, text,
                                 bar, shard_batches, checkpoint_seconds, checkpoint_every, stream_start,
                                 max_retries)
        except ClusterError:
            bar.close()  # what was committed stays: the same command resumes from it
            raise
        except FeaturelensError:
            bar.close()  # bad input found mid-stream: leave the store as it was
            _undo(db, folder, plan.run, plan.corpus_id, seq_floor)
            raise
        bar.close()
        finish_start = time.monotonic()  # the stream ends with the last merge, before Ray's teardown
        pool.close_in_background()  # workers gone now, Ray's shutdown overlaps the finish phase
        _finish(db, folder, plan.run, plan.config, lm, sae, plan.dict_id, plan.hookpoint, spec.dictionary,
                plan.corpus_id, state, streamed.pending, text, spec.fold_final_norm, streamed.n_seen, progress,
                plan.config.get("logit_effects", "all"))
        finish_end = time.monotonic()
    pool.close()
    return RayExtractResult(plan.run, plan.dict_id, plan.corpus_id, lm.model_id, streamed.n_seen,
                            state.stats.n_tokens, done_batches, False, time.perf_counter() - started,
                            finish_start - stream_start, finish_end - finish_start,
                            streamed.model_seconds, int(getattr(plan.source, "skipped", 0)),
                            streamed.nodes, streamed.shards, streamed.startup_seconds, streamed.redone,
                            pool.prepare_seconds, pool.start_seconds, pool.stop_seconds)


def _shards_left(n_windows: int, batch_size: int, done_batches: int, shard_batches: int) -> int:
    """At most how many shards this call cuts (fewer if the corpus runs out first)."""
    return max(0, math.ceil((math.ceil(n_windows / batch_size) - done_batches) / shard_batches))


def _dispatch(ray: Any, actors: list[Any], db: Store, plan: Any, state: ExtractionState, folder: Path,
              seq_floor: int, done_batches: int, text: TokenText, bar: tqdm, shard_batches: int,
              checkpoint_seconds: float, checkpoint_every: int | None, started: float,
              max_retries: int) -> _Streamed:
    """Check the workers match the driver, then stream shards through them (shard_flow)."""
    lm = plan.lm
    try:
        identities = ray.get([actor.identity.remote() for actor in actors])
        for model_id, dict_id, _, _ in identities:
            if (model_id, dict_id) != (lm.model_id, plan.dict_id):
                raise ClusterError(
                    f"A Ray worker loaded {model_id} / {dict_id}, not the driver's {lm.model_id} / "
                    f"{plan.dict_id}; give every node the same model and dictionary files.")
        if any(ids != sorted(plan.reduce.specials) for ids in ray.get([a.special_ids.remote() for a in actors])):
            raise ClusterError(f"A Ray worker's tokenizer has other special tokens than the driver's for "
                               f"{lm.model_id}; give every node the same model files.")
    except ClusterError:
        raise
    except Exception as error:  # noqa: BLE001 - Ray wraps whatever the worker raised
        raise _failure(error, 0) from None
    startup = time.monotonic() - started
    run = shard_flow.Run(db, plan, folder, seq_floor, text, checkpoint_seconds, checkpoint_every)
    flow = shard_flow.stream(ray, actors, run, state,
                             shard_flow.cut_shards(plan.batches, done_batches, shard_batches), done_batches,
                             plan.config["batch_size"], bar, max_retries,
                             lambda into, data: merge_partial(into, data),  # looked up per call: tests patch it
                             _shards_left(plan.n_windows, plan.config["batch_size"], done_batches, shard_batches))
    return _Streamed(flow.n_seen, flow.model_seconds, flow.pending, [node for *_, node in identities],
                     flow.shards, startup, flow.redone)
