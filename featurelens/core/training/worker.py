"""What one data-parallel training worker runs, wherever it was started (a local process,
a Ray actor or a torchrun rank): rebuild the source from its recipe, join the
``torch.distributed`` group, train as one rank, and hand rank 0's weights back as
safetensors bytes."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from featurelens.core.training.trainer import TrainConfig

#: how long a worker waits for the others at a collective before giving up
TIMEOUT = timedelta(minutes=30)


def build_source(recipe: dict[str, Any]) -> Any:
    """A worker's copy of the driver's source."""
    from featurelens.core.training.sources import ModelSource, TensorSource

    if recipe["kind"] == "tensors":
        from safetensors.torch import load_file

        tensors = load_file(recipe["path"])
        return TensorSource(tensors["inputs"], tensors.get("targets"), recipe["chunk_rows"])
    from featurelens.core.host.manager import create

    spec = recipe["backend"]
    backend = create("model_backend", "hf", spec["model"], dtype=spec.get("dtype", "float32"),
                     device=spec.get("device", "cpu"))
    fields = {k: v for k, v in recipe.items() if k not in ("kind", "backend")}
    return ModelSource(backend, **fields)


def train_rank(rank: int, world: int, init_method: str, job: dict[str, Any],
               source: Any = None) -> dict[str, Any] | None:
    """One worker's whole life: join the group, train, leave; rank 0 returns the result."""
    import torch.distributed as dist

    from featurelens.core.training.api import pick_device
    from featurelens.core.training.distributed import DataParallel
    from featurelens.core.training.trainer import run_training

    torch.set_num_threads(int(job["threads"]))
    device = pick_device(job["device"])
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank if torch.cuda.device_count() > 1 else 0))
        device = torch.device("cuda", local % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        source = source if source is not None else build_source(job["source"])
        result = run_training(source, TrainConfig(**job["config"]),
                              checkpoint_dir=Path(job["checkpoint_dir"]), device=device,
                              checkpoint_seconds=job["checkpoint_seconds"],
                              checkpoint_steps=job["checkpoint_steps"], progress=job["progress"],
                              hookpoint=job["hookpoint"], model_id=job["model_id"],
                              parallel=DataParallel(rank, world))
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return None
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in result.dictionary.state_dict().items()}
    return {"weights": save(state), "metrics": result.metrics, "steps": result.steps,
            "tokens": result.tokens, "resumed_from": result.resumed_from_step}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
