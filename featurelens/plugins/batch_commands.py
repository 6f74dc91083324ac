"""``featurelens batches``: provider batch jobs (OpenAI Batch API, Anthropic Message
Batches) in one group: ``status``, ``collect``, and ``adopt`` / ``forget`` to settle a
submission that a crash left undecided and the provider's list could not settle on its
own (see :mod:`featurelens.llm.batch.intent`)."""

from __future__ import annotations

import re
from pathlib import Path

import click

import featurelens
from featurelens.core.cli.options import existing_store, store_option

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(batches_group)


@click.group("batches")
def batches_group() -> None:
    """Provider batch jobs (OpenAI Batch API, Anthropic Message Batches)."""


@batches_group.command("status")
@click.option("--refresh/--no-refresh", default=True, show_default=True,
              help="Ask the providers for the latest status.")
@store_option
def batches_status(refresh: bool, store_path: Path | None) -> None:
    """Show the store's provider batches and their status."""
    from featurelens.core.store.database import Store
    from featurelens.llm.batch.submit import batch_rows, refresh_status

    from featurelens.llm.batch.progress import progress_lines

    with Store.open(existing_store(store_path), read_only=not refresh) as store:
        states = refresh_status(store) if refresh else {}
        rows = batch_rows(store)
    if not rows:
        click.echo("No provider batches in this store.")
    for line in progress_lines(rows, states):
        click.echo(_shown(line))


@batches_group.command("collect")
@click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON price table overriding the built-in one.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@store_option
def batches_collect(prices: Path | None, no_progress: bool, store_path: Path | None) -> None:
    """Download finished batches, cache their answers and write the runs' results."""
    from featurelens.core.store.database import Store
    from featurelens.jobs.batch_collection import collect_batches
    from featurelens.llm.pricing import PriceTable

    with Store.open(existing_store(store_path)) as store:
        for line in collect_batches(store, prices=PriceTable.load(prices), progress=not no_progress):
            click.echo(_shown(line))


@batches_group.command("adopt")
@click.argument("placeholder")
@click.argument("batch_id")
@store_option
def adopt_command(placeholder: str, batch_id: str, store_path: Path | None) -> None:
    """Record that submission PLACEHOLDER became the provider's batch BATCH_ID."""
    from featurelens.core.store.database import Store
    from featurelens.llm.batch.intent import adopt

    with Store.open(existing_store(store_path)) as store:
        click.echo(_shown(adopt(store, placeholder, batch_id)))


@batches_group.command("forget")
@click.argument("placeholder")
@store_option
def forget_command(placeholder: str, store_path: Path | None) -> None:
    """Drop submission PLACEHOLDER, which never became a provider batch: its requests are
    sent again by the next submission."""
    from featurelens.core.store.database import Store
    from featurelens.llm.batch.intent import forget

    with Store.open(existing_store(store_path)) as store:
        click.echo(_shown(forget(store, placeholder)))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(value: object) -> str:
    """``value`` as text safe for a terminal: control characters (ESC sequences that recolour,
    retitle or clear the terminal, carriage returns that hide text) written as escapes, so
    text a provider or a planted row put in the store is shown, never obeyed."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], str(value))
