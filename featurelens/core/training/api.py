"""The public training entry points: train on a model's activations or on tensors, and
save the result where extraction (and other tools) can load it.

``train_dictionary`` is what ``featurelens train`` and the ``featurelens run`` job
call. The finished dictionary is written in SAELens's format when SAELens has the
architecture (TopK, ReLU, JumpReLU SAEs), so SAELens users can load it too, and in
featurelens's own format otherwise; both are detected by ``load_dictionary``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.training.checkpoints import remove as remove_checkpoint
from featurelens.core.training.sources import (
    ActivationSource,
    ModelSource,
    TensorSource,
)
from featurelens.core.training.trainer import TrainConfig, TrainResult, run_training

SUMMARY = "training.json"


def pick_device(device: str | None) -> torch.device:
    """``auto`` means the GPU when there is one."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise FeaturelensError(f"Unknown device {device!r}; use auto, cpu or cuda.") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise FeaturelensError("--device cuda was asked for, but no GPU is visible; use --device auto or cpu.")
    return chosen


def checkpoint_dir_for(output: Path) -> Path:
    """Checkpoints live beside the output folder, never inside it (the output is
    written atomically at the end, and a half-trained dictionary is not a result)."""
    return output.parent / f".{output.name}.training"


def save_dictionary(dictionary: Any, output: Path, summary: dict[str, Any] | None = None) -> str:
    """Write ``dictionary`` to ``output`` (SAELens when possible, else featurelens).

    The formats are looked up in the registry, as loading does, so training never
    depends on which plugin provides them.
    """
    from featurelens.core.host.manager import create

    saelens_ok = dictionary.architecture in ("topk", "relu", "jumprelu") and dictionary.W_skip is None
    fmt = "saelens" if saelens_ok else "featurelens"
    create("dictionary_format", fmt).save(dictionary, str(output))
    if summary is not None:
        (output / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return fmt


def train_on_source(source: ActivationSource, config: TrainConfig, *, output: str | Path,
                    device: str | None = "auto", checkpoint_seconds: float = 60.0,
                    checkpoint_steps: int | None = None, progress: bool = True,
                    hookpoint: str | None = None, model_id: str | None = None,
                    dictionary_id: str | None = None,
                    callback: Callable[[int, dict[str, float]], None] | None = None,
                    runner: Callable[..., TrainResult] | None = None) -> TrainResult:
    """Train on ``source``, save to ``output``; rerunning after a kill resumes the run,
    and rerunning after success returns at once with the saved dictionary. ``runner``
    replaces ``run_training`` (e.g. a data-parallel
    :class:`~featurelens.core.training.data_parallel.DataParallelRunner`)."""
    from featurelens.core.host.manager import get_registry

    output = Path(output).expanduser()
    if output.exists() and (output / SUMMARY).is_file():
        return _already_trained(output, config, source)
    if output.exists() and any(output.iterdir()):
        raise FeaturelensError(
            f"{output} already exists and is not a finished training output; choose a new --output "
            "or delete it."
        )
    get_registry().get("dictionary_learner", config.architecture)  # unknown name: one sentence
    folder = checkpoint_dir_for(output)
    # A runner's workers pick their own device ("auto" on a cluster means the workers' GPUs).
    chosen = pick_device(device) if runner is None else (device or "auto")
    result = (runner or run_training)(source, config, checkpoint_dir=folder, device=chosen,
                          checkpoint_seconds=checkpoint_seconds, checkpoint_steps=checkpoint_steps,
                          progress=progress, hookpoint=hookpoint, model_id=model_id, callback=callback)
    dictionary = result.dictionary.cpu()
    if dictionary_id:
        dictionary.config["dictionary_id"] = dictionary_id
    dictionary.config["lr"] = config.resolved_lr()  # the rate used, also when derived from d_sae
    data = source.describe() if hasattr(source, "describe") else None
    if data is not None:
        dictionary.config["training_data"] = data
    summary = {"steps": result.steps, "tokens": result.tokens, "metrics": result.metrics,
               "config": config.__dict__, "lr": config.resolved_lr(), "data": data,
               "source": source.fingerprint(), "hookpoint": hookpoint,
               "model_id": model_id, "dictionary_id": dictionary_id}
    save_dictionary(dictionary, output, summary)
    remove_checkpoint(folder)
    return result


def _already_trained(output: Path, config: TrainConfig, source: ActivationSource) -> TrainResult:
    from featurelens.core.host.manager import get_registry

    summary = json.loads((output / SUMMARY).read_text(encoding="utf-8"))
    same = json.loads(json.dumps(config.__dict__, default=str)) == summary.get("config") \
        and summary.get("source") == source.fingerprint()
    if not same:
        raise FeaturelensError(
            f"{output} holds a dictionary trained with other options or activations; choose a new "
            "--output, or delete it to train again."
        )
    registry = get_registry()
    for name in registry.names("dictionary_format"):
        fmt = registry.get("dictionary_format", name).create()
        if fmt.detect(str(output)):
            dictionary = fmt.load(str(output))
            return TrainResult(dictionary, summary.get("metrics", {}), summary.get("steps", 0),
                               summary.get("tokens", 0), summary.get("steps", 0), already_done=True)
    raise FeaturelensError(f"{output} has a training summary but no dictionary; delete it and train again.")


def train_dictionary(*, backend: Any, hookpoint: str, output: str | Path, architecture: str = "topk",
                     expansion: int = 8, d_sae: int | None = None, k: int | None = 32,
                     corpus: str = "stdlib", tokens: int = 200_000, context: int = 64,
                     batch_size: int | None = None, lr: float | None = None, buffer_rows: int = 32_768,
                     hookpoint_out: str | None = None, options: dict[str, Any] | None = None,
                     seed: int = 0, bf16: bool = False, device: str | None = "auto",
                     checkpoint_seconds: float = 60.0, checkpoint_steps: int | None = None,
                     dictionary_id: str | None = None, progress: bool = True,
                     callback: Callable[[int, dict[str, float]], None] | None = None,
                     split: str = "train", runner: Callable[..., TrainResult] | None = None) -> TrainResult:
    """Train a dictionary on ``backend``'s activations at ``hookpoint`` over ``corpus``
    (its ``train`` documents by default, see :mod:`featurelens.core.corpus.split`).

    ``d_sae`` defaults to ``expansion * width``; ``batch_size`` to ``tokens / 400``
    within 256..4096, so that small budgets still take a few hundred steps. ``k`` applies to TopK-style learners
    (and transcoders); other learner options go in ``options``. For a transcoder pass
    ``hookpoint_out`` (the MLP output it predicts). Returns a :class:`TrainResult`
    whose ``metrics`` are the last step's loss, MSE, FVU, L0 and dead fraction.
    """
    if architecture == "transcoder" and not hookpoint_out:
        raise FeaturelensError(
            "A transcoder predicts one hookpoint from another; pass --hookpoint-out (e.g. "
            "blocks.6.hook_mlp_out with --hookpoint blocks.6.ln2.hook_normalized)."
        )
    source = ModelSource(backend, hookpoint, corpus=corpus, context=context, hookpoint_out=hookpoint_out,
                         split=split)
    width = source.d_in
    if d_sae is None:
        if not isinstance(expansion, int) or expansion < 1:
            raise FeaturelensError(f"--expansion must be a positive integer, got {expansion!r}.")
        d_sae = expansion * width
    learner_options = dict(options or {})
    if k is not None and architecture in ("topk", "batchtopk", "transcoder"):
        learner_options.setdefault("k", k)
    if hookpoint_out:
        learner_options.setdefault("hookpoint_out", hookpoint_out)
    if batch_size is None:
        batch_size = min(4096, max(256, tokens // 400)) if isinstance(tokens, int) else 4096
    config = TrainConfig(architecture=architecture, d_sae=d_sae, options=learner_options, tokens=tokens,
                         batch_size=batch_size, lr=lr, buffer_rows=buffer_rows, seed=seed, bf16=bf16)
    return train_on_source(source, config, output=output, device=device,
                           checkpoint_seconds=checkpoint_seconds, checkpoint_steps=checkpoint_steps,
                           progress=progress, hookpoint=hookpoint, model_id=backend.model_id,
                           dictionary_id=dictionary_id, callback=callback, runner=runner)


def train_on_tensors(inputs: torch.Tensor, *, output: str | Path, targets: torch.Tensor | None = None,
                     chunk_rows: int = 4096, **kwargs: Any) -> TrainResult:
    """Train on activations already in memory (``[n, d]``; ``targets`` for transcoders).

    Keyword arguments are :class:`TrainConfig` fields plus those of :func:`train_on_source`.
    """
    fields = set(TrainConfig.__dataclass_fields__)
    config = TrainConfig(**{k: v for k, v in kwargs.items() if k in fields})
    rest = {k: v for k, v in kwargs.items() if k not in fields}
    return train_on_source(TensorSource(inputs, targets, chunk_rows), config, output=output, **rest)
