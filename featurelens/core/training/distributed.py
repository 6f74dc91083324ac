"""Data-parallel training: one process per worker, gradients all-reduced.

Every worker reads its own share of the activation chunks (so the model runs once per
chunk across the group), the chunks are all-gathered in global order, and every worker
keeps the same shuffle buffer with the same seed. Each step therefore draws the same
global batch everywhere; a worker encodes only its slice of it, and the gradients,
weighted by slice size, are summed with ``torch.distributed``. The rest of the state
(dead-feature counters, AuxK's residual variance, the metrics) is reduced too, so a
run on N workers follows a 1-worker run with the same global batch to float tolerance.

Only ``torch.distributed`` is used here (gloo on CPU, NCCL on GPU); launching the
processes is :mod:`featurelens.core.training.data_parallel`'s job. Nothing here imports Ray.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from featurelens.core.errors import FeaturelensError

_ACTIVE: "DataParallel | None" = None


@dataclass
class DataParallel:
    """This process's place in an initialised process group."""

    rank: int
    world: int

    @property
    def leader(self) -> bool:
        """Rank 0 writes checkpoints, shows progress and returns the dictionary."""
        return self.rank == 0

    def bounds(self, rows: int) -> tuple[int, int]:
        """This worker's contiguous slice of a global batch of ``rows`` (sizes differ by at most 1)."""
        base, extra = divmod(rows, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    # -- data ---------------------------------------------------------------------
    def chunks(self, source: Any, start: int) -> Iterator[torch.Tensor]:
        """The source's chunks ``start, start + 1, ...`` in order, on every worker, each
        read by one worker only (round robin) and shared with an all-gather."""
        own = _own_chunks(source, start, self.rank, self.world)
        width = int(source.d_in + source.d_out)
        while True:
            mine = next(own, None)
            pieces = self._all_gather_rows(mine, width)
            for piece in pieces:
                if piece is None:
                    return
                yield piece

    def _all_gather_rows(self, rows: torch.Tensor | None, width: int) -> list[torch.Tensor | None]:
        device = self._device()
        count = torch.tensor([-1 if rows is None else rows.shape[0]], dtype=torch.long, device=device)
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        dist.all_gather(counts, count)
        sizes = [int(c) for c in counts]
        longest = max(max(sizes), 1)
        padded = torch.zeros(longest, width, dtype=torch.float32, device=device)
        if rows is not None and rows.shape[0]:
            padded[: rows.shape[0]] = rows.to(device, torch.float32)
        gathered = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(gathered, padded)
        return [None if size < 0 else part[:size].cpu() for size, part in zip(sizes, gathered)]

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")

    # -- reductions ---------------------------------------------------------------
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over workers (a new tensor)."""
        total = tensor.detach().clone().to(self._device())
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.to(tensor.device)

    def batch_topk_cut(self, acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """BatchTopK over the global batch: the value of its ``k * rows``-th largest
        activation (the cut to keep ``>=``), and the smallest positive value kept, which
        the learned threshold follows (``None`` when nothing positive is kept)."""
        rows = int(self.sum(torch.tensor([float(acts.shape[0])])))
        flat = acts.reshape(-1)
        keep = min(k * rows, flat.numel())
        top = flat.topk(keep, sorted=False).values if keep else flat[:0]
        gathered = [piece for piece in self._all_gather_rows(top.float().reshape(-1, 1), 1) if piece is not None]
        pool = torch.cat(gathered).reshape(-1)
        n_keep = min(k * rows, pool.numel())
        cut = pool.topk(n_keep).values[-1].to(acts.device, acts.dtype)
        kept = pool[pool >= float(cut)]
        positive = kept[kept > 0]
        return cut, (positive.min().to(acts.device) if positive.numel() else None)

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (they start equal; this makes sure)."""
        for tensor in list(module.parameters()) + list(module.buffers()):
            data = tensor.data.to(self._device())
            dist.broadcast(data, src=0)
            tensor.data.copy_(data.to(tensor.device))

    def sync_gradients(self, module: torch.nn.Module, weight: float, bad: bool) -> bool:
        """Sum ``weight * grad`` over workers in one all-reduce; return whether any worker
        had a non-finite loss (so that all of them stop together)."""
        params = list(module.parameters())
        flags = torch.tensor([float(p.grad is not None) for p in params] + [float(bad)])
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight for p in params]
        flat = torch.cat([g.to(self._device(), torch.float32) for g in grads] + [flags.to(self._device())])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        has_grad = flat[-len(flags):]
        for index, p in enumerate(params):
            size = p.numel()
            if has_grad[index] > 0:
                value = flat[offset:offset + size].reshape(p.shape).to(p.device, p.dtype)
                p.grad = value
            else:
                p.grad = None
            offset += size
        return bool(has_grad[-1] > 0)

    # -- one step -----------------------------------------------------------------
    def train_step(self, model: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   target: torch.Tensor | None, dead: torch.Tensor | None, autocast: Any,
                   on_nan: Callable[[], str] | None = None) -> dict[str, torch.Tensor]:
        """:func:`~featurelens.core.training.trainer.train_step` on this worker's slice of
        the global batch ``x``; returns the global batch's loss, MSE, L0, variance and
        which features fired anywhere."""
        rows = x.shape[0]
        if rows < self.world:
            # A last batch smaller than the group: every worker steps on all of it alike
            # (the same data and state give the same result, with no collective to miss).
            from featurelens.core.training.trainer import train_step

            return train_step(model, optimizer, x, target, dead, autocast, on_nan)
        start, stop = self.bounds(rows)
        mine = x[start:stop]
        mine_target = None if target is None else target[start:stop]
        optimizer.zero_grad(set_to_none=True)
        local = stop - start
        with autocast, active(self):
            out = model.loss(mine, mine_target, dead_mask=dead)
        bad = not bool(torch.isfinite(out["loss"]))
        if not bad:
            out["loss"].backward()
        fired, loss = out["fired"], out["loss"].detach().float()
        mse, l0 = out["mse"].float(), out["l0"].float()
        if self.sync_gradients(model, local / rows, bad):
            raise FeaturelensError(on_nan() if on_nan is not None else "Training diverged: the loss is NaN.")
        model.project_decoder_grad()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.after_step()
        weighted = torch.stack([loss, mse, l0]).to(x.device) * local
        totals = self.sum(torch.cat([weighted, fired.float()]))
        reference = x if target is None else target
        return {"loss": totals[0] / rows, "mse": totals[1] / rows, "l0": totals[2] / rows,
                "fired": totals[3:] > 0,
                "variance": (reference - reference.mean(dim=0)).pow(2).sum(dim=-1).mean()}


def _own_chunks(source: Any, start: int, rank: int, world: int) -> Iterator[torch.Tensor]:
    """Chunks ``start + rank``, ``start + rank + world``...; sources whose ``chunks``
    takes ``stride`` skip the others without computing them."""
    if "stride" in inspect.signature(source.chunks).parameters:
        yield from source.chunks(start + rank, stride=world)
        return
    for index, chunk in enumerate(source.chunks(start)):
        if index % world == rank:
            yield chunk


def current() -> DataParallel | None:
    """The data-parallel group a loss is being computed in, if any."""
    return _ACTIVE


@contextmanager
def active(parallel: DataParallel) -> Iterator[None]:
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, parallel
    try:
        yield
    finally:
        _ACTIVE = previous


def batch_variance(rows: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of ``rows`` from their mean, over the whole global batch
    when a data-parallel step is running (AuxK normalises by it), else over ``rows``."""
    parallel = current()
    if parallel is None:
        return (rows - rows.mean(dim=0)).pow(2).sum(dim=-1).mean()
    data = rows.detach().double()
    parts = torch.cat([data.sum(dim=0), data.pow(2).sum().reshape(1),
                       torch.tensor([float(rows.shape[0])], dtype=torch.float64, device=rows.device)])
    totals = parallel.sum(parts)
    n = totals[-1]
    mean = totals[:-2] / n
    return (totals[-2] / n - mean.pow(2).sum()).clamp_min(0).to(rows.dtype)
