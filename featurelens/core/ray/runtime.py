"""Starting or joining Ray, shared by every stage that can run on it (training, extraction,
labeling).

Ray is optional and imported only inside these functions, so importing this module
costs nothing and the default path never loads Ray. It lives in the core because
training (core) and the scale floor both need it and the core may not import scale.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from featurelens.core.errors import FeaturelensError
from featurelens.core.ray.address import check_address

#: Object store of a local cluster: partial states and trained weights are a few MB,
#: so keep /dev/shm small.
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


def connect(address: str | None, num_cpus: int, *, log_to_driver: bool = False) -> bool:
    """Join the cluster at ``address`` (or start a local one of ``num_cpus`` CPUs).

    Returns whether this call made the connection (the caller then shuts it down); a
    connection the caller already made is reused. An unreachable cluster is one
    :class:`ClusterError` sentence naming the fix.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                               "log_to_driver": log_to_driver}
    check_address(address)  # nothing there: one sentence in seconds, not ray.init's long wait
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"at --address {address}" if address else "locally"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ClusterError(
            f"Could not connect to a Ray cluster {where} ({first}); start one with "
            "`ray start --head` or leave out --address to start a local one.") from None
    return True


@contextmanager
def connected(address: str | None, num_cpus: int, *, log_to_driver: bool = False) -> Iterator[Any]:
    """Yield ``ray`` connected as :func:`connect` does; a connection made here is closed
    on exit, one the caller already made is left open."""
    started = connect(address, num_cpus, log_to_driver=log_to_driver)
    ray = require_ray()
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
