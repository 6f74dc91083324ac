"""Connecting to Ray: an existing cluster (``--address``) or a small local one.

Ray is optional. It is imported only here, on demand, and a missing install or an
unreachable cluster is one sentence naming the fix, not a traceback.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray_address import check_address

#: Object store of a local cluster: partial states are a few MB, so keep /dev/shm small.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


class ClusterError(FeaturelensError):
    """The cluster, not the input, failed: what was committed stays, a rerun resumes."""


def require_ray() -> Any:
    """The ``ray`` module, or a one-sentence error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FeaturelensError(
            "--executor ray needs Ray, which is not installed; install it with "
            "pip install 'featurelens[ray]'.") from None
    return ray


@contextmanager
def connected(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Yield ``ray`` connected to ``address`` (or a local cluster of ``num_cpus`` CPUs).

    A connection made here is closed on exit; one the caller already made is reused
    and left open.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                               "log_to_driver": False}
    check_address(address)  # nothing there: one sentence in seconds, not ray.init's long wait
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"at --address {address}" if address else "locally"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ClusterError(
            f"Could not connect to a Ray cluster {where} ({first}); start one with "
            "`ray start --head` or leave out --address to start a local one.") from None
    try:
        yield ray
    finally:
        ray.shutdown()
