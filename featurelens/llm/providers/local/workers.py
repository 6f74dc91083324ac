"""Split a batch of local-model requests across threads that each run torch on one core.

Why (BENCHMARKS.md "Local models: one core per request"): a prompt's pass on a CPU is
a few hundred small operations (norms, rotary embeddings, attention, projections of a
few hundred rows); torch splits each across its intra-op threads and waits for all of
them at the end of each operation. On 2 cores that gave little over one core, and on
cores shared with other work far less than one, because every operation waits for its
slowest thread. Requests are independent, so instead each worker answers its own
share of the batch on one core: the cores never wait for each other. A worker's
numbers are those of the one-thread computation, which on this build are the same
bits as torch's default threads for these passes (tests/llm/test_local_workers.py
pins answers against one request at a time).

A batch is cut into contiguous shards, so requests sent together for one feature (a
simulation's two prompts) stay in one worker, one after the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")


def default_workers(device: str | None) -> int:
    """One worker per core this process may use on the CPU; one elsewhere (a GPU gains
    nothing from several host threads feeding it)."""
    if device is not None and not device.startswith("cpu"):
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def split_batches(workers: int, chosen: bool, device_type: str) -> bool:
    """Whether a batch is split across workers: when there are several, and not on a GPU the
    model was put on without ``device=`` (a worker count left to the default is for CPUs)."""
    return workers > 1 and (chosen or device_type == "cpu")


def shards(items: list[Item], n: int) -> list[list[Item]]:
    """``items`` cut into at most ``n`` contiguous, non-empty runs whose sizes differ by at most one."""
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return [shard for shard in out if shard]


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # per thread under OpenMP: the caller's threads are unchanged


class ModelWorkers:
    """``n`` threads, each running torch with one intra-op thread."""

    def __init__(self, n: int):
        self.n = n
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="featurelens-local-model",
                                        initializer=_one_thread)

    def map(self, answer: Callable[[list[Item]], list[Any]], items: list[Item]) -> list[Any]:
        """``answer`` applied to each shard of ``items`` in its own worker, results in the
        items' order; a shard whose call raises gives that exception for each of its items."""
        parts = shards(items, self.n)
        futures = [self._pool.submit(answer, part) for part in parts]
        out: list[Any] = []
        for part, future in zip(parts, futures):
            try:
                found = future.result()
            except Exception as error:  # noqa: BLE001 - each request learns why
                found = [error] * len(part)
            out.extend(found)
        return out

    def threads(self) -> list[int]:
        """torch's intra-op thread count as each worker sees it (tests)."""
        import torch

        return [f.result() for f in [self._pool.submit(torch.get_num_threads) for _ in range(self.n)]]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
