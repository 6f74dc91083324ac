"""``--executor ray --workers N --address`` for explain and score: where requests are answered.

In process (the default) nothing changes and Ray is never imported. With ``ray`` the
commands hand the engine a :class:`featurelens.scale.remote_provider.RayProvider`, so
a ``local:`` model answers on N Ray actors while this process alone writes the store.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

import click

from featurelens.core.errors import FeaturelensError


def executor_options(function):
    """Add --executor, --workers and --address to a labeling command."""
    options = [
        click.option("--executor", type=click.Choice(["inprocess", "ray"]), default="inprocess",
                     show_default=True, help="ray: answer the LLM requests on Ray workers "
                     "(pip install 'featurelens[ray]'); the store is written here, once."),
        click.option("--workers", type=click.IntRange(1, 4096), default=2, show_default=True,
                     help="Ray workers, each holding the provider (one GPU each when the cluster has "
                     "GPUs). Only with --executor ray."),
        click.option("--address", default=None, help="Ray cluster to join (auto, HOST:PORT); default: "
                     "start a local one. Only with --executor ray."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def check_executor(executor: str, address: str | None, batch_api: bool) -> None:
    """Refuse option combinations that would silently ignore --executor or --address."""
    if executor != "ray" and address is not None:
        raise FeaturelensError("--address only applies with --executor ray; add --executor ray "
                               "or leave out --address.")
    if executor == "ray" and batch_api:
        raise FeaturelensError("--executor ray sends requests from Ray workers, which the batch API "
                               "does not use; pass --no-batch-api or leave out --executor ray.")


@contextmanager
def labeling_provider(executor: str, llm: str, provider_options: dict[str, Any], *, workers: int,
                      address: str | None, rpm: float | None, tpm: float | None) -> Iterator[Any]:
    """None in process (the command builds its provider as before), else a RayProvider."""
    if executor == "ray" and llm.startswith("vllm:"):
        raise FeaturelensError(f"{llm} already runs on Ray through ray.data.llm; leave out --executor ray "
                               "and set its replicas with --provider-option concurrency=N.")
    if executor != "ray":
        with nullcontext(None) as nothing:
            yield nothing
        return
    from featurelens.scale.remote_provider import ray_provider

    with ray_provider(llm, provider_options, workers=workers, address=address, rpm=rpm, tpm=tpm) as provider:
        yield provider
