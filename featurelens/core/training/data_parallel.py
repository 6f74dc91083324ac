"""Launching data-parallel training: local processes, Ray actors, or torchrun.

:class:`DataParallelRunner` takes the place of ``run_training`` in
:func:`~featurelens.core.training.api.train_on_source`: the driver still checks the
options, fingerprints the source and saves the result, while N workers train. Each
worker rebuilds the source from a plain recipe (a model spec, or a safetensors file of
the given tensors), joins a ``torch.distributed`` group (gloo on CPU, NCCL on GPU) and
runs the ordinary training loop as one rank of it. Rank 0 writes the checkpoints (the
folder must be visible to every worker to resume) and hands the trained weights back
as safetensors bytes. Ray is imported only when ``executor="ray"``. What a worker runs is in
:mod:`featurelens.core.training.worker`.
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray.address import check_address, check_workers
from featurelens.core.training.trainer import TrainConfig, TrainResult
from featurelens.core.training.worker import free_port, train_rank

EXECUTORS = ("processes", "ray", "torchrun")
TENSORS = "data.safetensors"
RESULT = "result.safetensors"


class DataParallelRunner:
    """``run_training`` across ``workers`` processes started by ``executor``."""

    def __init__(self, workers: int, executor: str = "processes", *, model: dict[str, Any] | None = None,
                 address: str | None = None, threads: int = 1):
        if executor not in EXECUTORS:
            raise FeaturelensError(f"Unknown training executor {executor!r}; use one of {', '.join(EXECUTORS)}.")
        if executor != "torchrun" and (not isinstance(workers, int) or workers < 1):
            raise FeaturelensError(f"--workers must be a positive integer, got {workers!r}.")
        if address is not None and executor != "ray":
            raise FeaturelensError("--address names a Ray cluster; use it with --executor ray.")
        if executor != "torchrun":  # before the model loads or a checkpoint folder appears
            check_workers(workers, max(1, int(threads)), local=address is None)
        if executor == "ray":
            from featurelens.core.ray.runtime import require_ray

            require_ray()
            check_address(address)
        self.workers, self.executor, self.model = workers, executor, model
        self.address, self.threads = address, max(1, int(threads))

    def __call__(self, source: Any, config: TrainConfig, *, checkpoint_dir: Path, device: Any = "cpu",
                 checkpoint_seconds: float = 60.0, checkpoint_steps: int | None = None,
                 progress: bool = True, hookpoint: str | None = None, model_id: str | None = None,
                 callback: Any = None) -> TrainResult:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        job = {"source": self._recipe(source, checkpoint_dir), "config": asdict(config),
               "checkpoint_dir": str(checkpoint_dir), "device": str(device),
               "checkpoint_seconds": checkpoint_seconds, "checkpoint_steps": checkpoint_steps,
               "progress": progress, "hookpoint": hookpoint, "model_id": model_id, "threads": self.threads}
        if self.executor == "processes":
            summary = _run_processes(job, self.workers)
        elif self.executor == "ray":
            from featurelens.core.training.ray_training import run_on_ray

            summary = run_on_ray(job, self.workers, self.address)
        else:
            summary = run_torchrun_rank(job, source)
        return _result(summary, checkpoint_dir, source, config, hookpoint, model_id)

    def _recipe(self, source: Any, folder: Path) -> dict[str, Any]:
        from featurelens.core.training.sources import ModelSource, TensorSource

        if isinstance(source, TensorSource):
            from safetensors.torch import save_file

            tensors = {"inputs": source.inputs.contiguous()}
            if source.targets is not None:
                tensors["targets"] = source.targets.contiguous()
            save_file(tensors, str(folder / TENSORS))
            return {"kind": "tensors", "path": str(folder / TENSORS), "chunk_rows": source.chunk_rows}
        if isinstance(source, ModelSource) and self.model is not None:
            return {"kind": "model", "backend": self.model, "hookpoint": source.hookpoint,
                    "corpus": source.corpus, "context": source.context,
                    "windows_per_chunk": source.windows_per_chunk, "hookpoint_out": source.hookpoint_out,
                    "prepend_bos": source.prepend_bos, "corpus_options": source.corpus_options,
                    "split": source.split}
        raise FeaturelensError(
            "Data-parallel training needs activations every worker can rebuild: a model given by "
            "name or folder, or tensors; train this source with the in-process executor.")






def run_torchrun_rank(job: dict[str, Any], source: Any) -> dict[str, Any] | None:
    """This process as one rank of a torchrun launch (RANK, WORLD_SIZE, MASTER_ADDR...)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise FeaturelensError(
            "--executor torchrun runs under torchrun; start it as `torchrun --standalone --nproc-per-node N -m "
            "featurelens train ... --executor torchrun`.")
    return train_rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", job, source)


def rank_device(device: str) -> str:
    """Under torchrun, a CUDA device means this rank's GPU (``cuda:LOCAL_RANK``)."""
    local = os.environ.get("LOCAL_RANK")
    if local is None or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    return f"cuda:{int(local) % torch.cuda.device_count()}"




def _process_main(rank: int, world: int, init_method: str, job_text: str) -> None:
    """A spawned worker: the result and any error go to files in the checkpoint folder
    (plain JSON and safetensors; nothing is unpickled by the driver)."""
    job = json.loads(job_text)
    folder = Path(job["checkpoint_dir"])
    try:
        summary = train_rank(rank, world, init_method, job)
    except FeaturelensError as error:
        (folder / f"error-{rank}.txt").write_text(str(error), encoding="utf-8")
        raise SystemExit(1) from None
    except BaseException:  # noqa: BLE001 - recorded for the driver, then the process fails
        last = traceback.format_exc().strip().splitlines()[-1]
        (folder / f"error-{rank}.txt").write_text(
            f"A training worker failed ({last}); run the same command again to resume from the last "
            "checkpoint.", encoding="utf-8")
        raise SystemExit(1) from None
    if summary is not None:
        (folder / RESULT).write_bytes(summary.pop("weights"))
        (folder / "result.json").write_text(json.dumps(summary), encoding="utf-8")


def _run_processes(job: dict[str, Any], workers: int) -> dict[str, Any]:
    import torch.multiprocessing as mp

    folder = Path(job["checkpoint_dir"])
    for stale in [folder / RESULT, folder / "result.json", *folder.glob("error-*.txt")]:
        stale.unlink(missing_ok=True)
    context = mp.get_context("spawn")
    init_method = f"tcp://127.0.0.1:{free_port()}"
    text = json.dumps(job)
    procs = [context.Process(target=_process_main, args=(rank, workers, init_method, text)) for rank in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    errors = sorted(folder.glob("error-*.txt"))
    killed = [rank for rank, proc in enumerate(procs) if proc.exitcode is not None and proc.exitcode < 0]
    if killed:  # the others then fail on a closed connection; the kill is the news
        for path in errors:
            path.unlink()
        raise FeaturelensError(
            f"Training worker {killed[0]} was killed (signal {-procs[killed[0]].exitcode}); run the same "
            "command again to resume from the last checkpoint.")
    if errors:
        message = errors[0].read_text(encoding="utf-8")
        for path in errors:
            path.unlink()
        raise FeaturelensError(message)
    if any(proc.exitcode != 0 for proc in procs) or not (folder / "result.json").is_file():
        codes = ", ".join(str(proc.exitcode) for proc in procs)
        raise FeaturelensError(
            f"A training worker process died (exit codes {codes}); run the same command again to "
            "resume from the last checkpoint.")
    summary = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    summary["weights"] = (folder / RESULT).read_bytes()
    (folder / "result.json").unlink()
    (folder / RESULT).unlink()
    return summary


def _result(summary: dict[str, Any] | None, folder: Path, source: Any, config: TrainConfig,
            hookpoint: str | None, model_id: str | None) -> TrainResult:
    """Rebuild the trained dictionary on the driver from rank 0's weights."""
    if summary is None:  # a torchrun rank other than 0: nothing to save here
        raise WorkerDone()
    from safetensors.torch import load

    from featurelens.core.host.manager import create

    (folder / TENSORS).unlink(missing_ok=True)
    options = dict(config.options)
    if source.d_out:
        options.setdefault("d_out", source.d_out)
    model = create("dictionary_learner", config.architecture, source.d_in, config.d_sae,
                   hookpoint=hookpoint, model_id=model_id, **options)
    model.load_state_dict(load(summary["weights"]))
    model.eval()
    return TrainResult(model, summary["metrics"], summary["steps"], summary["tokens"], summary["resumed_from"])


class WorkerDone(Exception):
    """Raised on torchrun ranks other than 0 once training is over: rank 0 saves the result."""
