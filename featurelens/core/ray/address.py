"""Checks made before joining or starting a Ray cluster, so bad options fail in seconds.

``ray.init(address=...)`` waits about a minute per attempt, and retries, when nothing
answers at the address (or something that is not Ray does), so a mistyped
``--address`` would hang the command. :func:`check_address` asks the address itself
first, with a short timeout: a TCP connection, then the HTTP/2 greeting every gRPC
server (a Ray head's GCS) sends back. :func:`check_workers` bounds ``--workers`` before
any process starts: a local cluster is sized to the workers asked for, so a huge
number would start that many processes. Shared by extraction, training and labeling;
imports nothing from Ray.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

from featurelens.core.errors import FeaturelensError

#: How long each step of the reachability check may take.
CONNECT_TIMEOUT_S = 5.0
#: Workers (times their threads) a local cluster may run per CPU core of this machine.
LOCAL_WORKERS_PER_CORE = 4
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_FRAME = 0x04


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FeaturelensError(f"--address {address!r} is not HOST:PORT (or auto); write e.g. "
                               "--address 10.0.0.5:6379, the address `ray start --head` printed.")
    return host, int(port)


def _resolved(address: str) -> str | None:
    """``auto`` as Ray reads it ($RAY_ADDRESS, then the last cluster started here), or None."""
    if address != "auto":
        return address
    try:  # Ray's own reading of "auto"; a private helper, so any failure leaves it to ray.init
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - ray.init reports what it cannot resolve itself
        return None


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within a few seconds, an ``--address`` where no Ray cluster answers."""
    if not address or address == "local" or address.startswith("ray://"):
        return  # no address: a local cluster; ray:// clients time out on their own
    target = _resolved(address)
    if target is None:
        return
    host, port = _host_port(target)
    fix = ("start one there with `ray start --head --port PORT` and pass the address it prints, "
           "or leave out --address to start a local cluster")
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise FeaturelensError(f"No Ray cluster answers at --address {address} ({reason}); {fix}.") from None
    with connection:
        try:
            connection.settimeout(timeout)
            connection.sendall(_HTTP2_PREFACE)
            header = connection.recv(9)
        except OSError:
            header = b""
    if len(header) < 9 or header[3] != _SETTINGS_FRAME:
        raise FeaturelensError(f"What answers at --address {address} is not a Ray cluster (it does not "
                               f"speak gRPC); {fix}.")


def check_workers(workers: Any, threads: Any = 1, *, local: bool = True) -> None:
    """Refuse a worker count that is not a positive whole number, or (for a cluster started
    here) one this machine cannot run."""
    for flag, value in (("--workers", workers), ("--worker-threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FeaturelensError(f"{flag} must be a positive integer, got {value!r}; fix {flag}.")
    cores = os.cpu_count() or 1
    if local and workers * threads > LOCAL_WORKERS_PER_CORE * cores:
        raise FeaturelensError(
            f"--workers {workers}{f' x --worker-threads {threads}' if threads > 1 else ''} is more workers than "
            f"this machine's {cores} "
            f"CPU core(s) can run (at most {LOCAL_WORKERS_PER_CORE * cores}); ask for fewer workers, or join "
            "a larger Ray cluster with --executor ray --address HOST:PORT.")


def check_fits(resources: Mapping[str, float], workers: int, cpus_each: float, gpus_each: float) -> None:
    """Refuse workers the cluster can never place all at once (they would wait forever)."""
    where = "The Ray cluster"
    if gpus_each and workers * gpus_each > resources.get("GPU", 0):
        raise FeaturelensError(
            f"{where} has {resources.get('GPU', 0):g} GPU(s), fewer than the {workers * gpus_each:g} that "
            f"--workers {workers} needs; ask for at most {int(resources.get('GPU', 0) // gpus_each)} workers.")
    if cpus_each and workers * cpus_each > resources.get("CPU", 0):
        raise FeaturelensError(
            f"{where} has {resources.get('CPU', 0):g} CPU(s), fewer than the {workers * cpus_each:g} that "
            f"--workers {workers} needs; ask for fewer workers (or fewer --worker-threads).")
