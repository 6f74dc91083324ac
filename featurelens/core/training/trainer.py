"""The training loop: stream activations, shuffle, step, checkpoint, resume.

Adam with a short linear warm-up and a linear decay over the last fifth of the run,
gradient clipping at norm 1, decoder rows kept at unit norm (and their gradient
projected) where the architecture asks for it. A feature is "dead" when it has not
fired for ``dead_after_tokens`` tokens; dead features get the AuxK loss.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.training import checkpoints
from featurelens.core.training.buffer import ShuffleBuffer
from featurelens.core.training.sources import ActivationSource


@dataclass
class TrainConfig:
    """Everything that shapes the result (hashed into the resume key)."""

    architecture: str = "topk"
    d_sae: int = 4096
    options: dict[str, Any] = field(default_factory=dict)  #: learner options (k, l1_coefficient...)
    tokens: int = 1_000_000
    batch_size: int = 4096
    lr: float | None = None  #: default: 2e-4 / sqrt(d_sae / 2**14) (Gao et al. 2024)
    warmup_steps: int | None = None
    buffer_rows: int = 32_768
    dead_after_tokens: int | None = None
    seed: int = 0
    bf16: bool = False

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 2**14)

    def key(self, source_fingerprint: str) -> str:
        material = json.dumps([asdict(self), source_fingerprint], sort_keys=True, default=str)
        return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    dictionary: Any
    metrics: dict[str, float]
    steps: int
    tokens: int
    resumed_from_step: int
    already_done: bool = False  #: the output existed: nothing was trained this time


def _lr_factor(step: int, total_steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    decay_start = int(total_steps * 0.8)
    if step >= decay_start and total_steps > decay_start:
        return max(0.0, (total_steps - step) / (total_steps - decay_start))
    return 1.0


def _check(config: TrainConfig) -> None:
    for name in ("tokens", "batch_size", "buffer_rows", "d_sae"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise FeaturelensError(f"Training option {name} must be a positive integer, got {value!r}.")
    if config.lr is not None and not config.lr > 0:
        raise FeaturelensError(f"The learning rate must be positive, got {config.lr!r}.")


def run_training(source: ActivationSource, config: TrainConfig, *, checkpoint_dir: Path,
                 device: torch.device | str = "cpu", checkpoint_seconds: float = 60.0,
                 checkpoint_steps: int | None = None, progress: bool = True,
                 hookpoint: str | None = None, model_id: str | None = None,
                 callback: Callable[[int, dict[str, float]], None] | None = None,
                 parallel: Any = None) -> TrainResult:
    """Train a dictionary on ``source`` and return it; resumes from ``checkpoint_dir``.

    ``parallel`` (a :class:`~featurelens.core.training.distributed.DataParallel`) makes
    this process one worker of a data-parallel run: it reads its share of the chunks,
    encodes its slice of each batch, and only rank 0 writes checkpoints and reports.

    A checkpoint is written every ``checkpoint_seconds`` (or ``checkpoint_steps``) and
    the folder is left in place until the caller saves the final dictionary, so a
    crash between the last step and the final save loses nothing.
    """
    from featurelens.core.host.manager import create

    _check(config)
    device = torch.device(device)
    torch.manual_seed(config.seed)
    options = dict(config.options)
    if source.d_out:
        options.setdefault("d_out", source.d_out)
    model = create("dictionary_learner", config.architecture, source.d_in, config.d_sae,
                   hookpoint=hookpoint, model_id=model_id, **options).to(device)
    if parallel is not None:
        parallel.broadcast_parameters(model)
        progress = progress and parallel.leader
        callback = callback if parallel.leader else None
    optimizer = make_adam(list(model.parameters()), config.resolved_lr())
    total_steps = max(1, math.ceil(config.tokens / config.batch_size))
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, total_steps // 20)
    dead_after = config.dead_after_tokens or max(config.batch_size, min(10_000_000, config.tokens // 10))
    buffer = ShuffleBuffer(config.buffer_rows, source.d_in + source.d_out, seed=config.seed, device=device)
    since_fired = torch.zeros(model.d_sae, dtype=torch.long, device=device)
    key = config.key(source.fingerprint())
    step = tokens_seen = chunks_read = 0
    initialised = False

    # the shapes this run holds, checked against the file before anything is allocated
    saved = checkpoints.load(checkpoint_dir, template={"model": model.state_dict(), "buffer": {"rows": buffer.rows},
                                                       "since_fired": since_fired})
    if saved is not None:
        if saved.get("key") != key:
            raise FeaturelensError(
                f"The training checkpoint in {checkpoint_dir} was made with other options or "
                "activations; rerun with the same options to resume it, or delete the folder to start over."
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        buffer.load(saved["buffer"])
        since_fired = saved["since_fired"].to(device)
        step, tokens_seen, chunks_read = int(saved["step"]), int(saved["tokens_seen"]), int(saved["chunks_read"])
        torch.set_rng_state(saved["torch_rng"])
        initialised = True
    resumed_from = step

    stream = source.chunks(chunks_read) if parallel is None else parallel.chunks(source, chunks_read)
    step_fn = train_step if parallel is None else parallel.train_step
    exhausted = False

    def refill() -> None:
        nonlocal chunks_read, exhausted
        # Never read (run the model on) more tokens than the budget still needs.
        while not exhausted and len(buffer) < buffer.capacity and tokens_seen + len(buffer) < config.tokens:
            chunk = next(stream, None)
            if chunk is None:
                exhausted = True
                return
            buffer.add(chunk)
            chunks_read += 1
            if step == 0:  # the first fill runs the model for a while before any update: say so
                bar.set_postfix_str(f"reading activations: {len(buffer):,}/{buffer.capacity:,} buffer rows")

    def snapshot() -> None:
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise FeaturelensError(_nan_message(step, checkpoint_dir, resumed_from or None))
        if parallel is not None and not parallel.leader:
            return  # every worker holds the same state; rank 0 writes it
        checkpoints.save(checkpoint_dir, {
            "key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "buffer": buffer.state(), "since_fired": since_fired.cpu(), "step": step,
            "tokens_seen": tokens_seen, "chunks_read": chunks_read, "torch_rng": torch.get_rng_state(),
        })

    bar = _progress(config.tokens, tokens_seen, progress)
    recent: dict[str, float] = {}
    last_save = time.monotonic()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.bf16)
    try:
        while tokens_seen < config.tokens:
            if buffer.needs_refill():
                refill()
            if len(buffer) == 0:
                if step == 0:
                    raise FeaturelensError(
                        "The activation source gave no rows to train on; give it more text or tokens."
                    )
                break  # the corpus ran out before the token budget: train on what there was
            if not initialised:
                bar.set_postfix_str("initialising from the first activations (geometric median of b_dec)")
                sample = buffer.rows[: min(len(buffer), 8192)]
                model.initialize_from_data(sample[:, : source.d_in],
                                           sample[:, source.d_in:] if source.d_out else None)
                initialised = True
            batch = buffer.take(min(config.batch_size, config.tokens - tokens_seen))
            x = batch[:, : source.d_in]
            target = batch[:, source.d_in:] if source.d_out else None
            dead = since_fired >= dead_after
            for group in optimizer.param_groups:
                group["lr"] = config.resolved_lr() * _lr_factor(step, total_steps, warmup)
            out = step_fn(model, optimizer, x, target, dead, autocast,
                             on_nan=functools.partial(_nan_message, step, checkpoint_dir, resumed_from or None))
            loss = out["loss"]
            since_fired += x.shape[0]
            since_fired[out["fired"]] = 0
            step += 1
            tokens_seen += x.shape[0]
            recent = {
                "loss": float(loss.detach()), "mse": float(out["mse"]), "l0": float(out["l0"]),
                "fvu": float(out["mse"] / out["variance"].clamp_min(1e-12)),
                "dead_fraction": float((since_fired >= dead_after).float().mean()),
            }
            bar.update(x.shape[0])
            bar.set_postfix(loss=f"{recent['loss']:.4g}", l0=f"{recent['l0']:.1f}",
                            dead=f"{recent['dead_fraction']:.1%}", refresh=False)
            if callback is not None:
                callback(step, recent)
            due_steps = checkpoint_steps is not None and step % checkpoint_steps == 0
            due_time = checkpoint_steps is None and time.monotonic() - last_save >= checkpoint_seconds
            if due_steps or due_time:
                snapshot()
                last_save = time.monotonic()
        snapshot()  # the final state survives a crash during the caller's final save
    finally:
        bar.close()
    model.eval()
    return TrainResult(model, recent, step, tokens_seen, resumed_from)


def make_adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam, fused (one kernel over all parameters) where this torch supports it: the
    optimizer's passes over ``W_enc``/``W_dec`` are a tenth of a TopK step otherwise."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))


def train_step(model: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor | None,
               dead: torch.Tensor | None, autocast: Any, on_nan: Callable[[], str] | None = None,
               ) -> dict[str, torch.Tensor]:
    """One optimisation step: loss, backward, decoder-gradient projection, clipping,
    Adam, and the architecture's upkeep (unit norm...). The benchmark times this."""
    with autocast:
        out = model.loss(x, target, dead_mask=dead)
    loss = out["loss"]
    if on_nan is not None and not torch.isfinite(loss):
        raise FeaturelensError(on_nan())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    model.project_decoder_grad()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    model.after_step()
    return out


def _nan_message(step: int, folder: Path, resumed_from: int | None) -> str:
    kept = (f"the last good checkpoint in {folder} is kept" if (folder / checkpoints.FILE).is_file()
            else "no checkpoint had been written yet")
    return (
        f"Training diverged at step {step}: the loss is NaN or infinite; {kept}. "
        "Lower the learning rate (--lr), turn off --bf16, or check the activations for "
        "non-finite values, then run the same command again."
    )


def _progress(total: int, done: int, enabled: bool) -> Any:
    from featurelens.core.progress import progress

    return progress(total, initial=done, unit="tok", unit_scale=True, desc="train", enabled=enabled)
