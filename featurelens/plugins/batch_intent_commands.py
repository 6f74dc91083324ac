"""``featurelens batches adopt`` / ``batches forget``: settle a batch submission that a
crash left undecided and the provider's list could not settle on its own (see
:mod:`featurelens.llm.batch_intent`)."""

from __future__ import annotations

from pathlib import Path

import click

from featurelens.core.cli_options import store_option


def _store_path(store_path: Path | None) -> Path:
    from featurelens.plugins.labeling_commands import _existing_store

    return _existing_store(store_path)


@click.command("adopt")
@click.argument("placeholder")
@click.argument("batch_id")
@store_option
def adopt_command(placeholder: str, batch_id: str, store_path: Path | None) -> None:
    """Record that submission PLACEHOLDER became the provider's batch BATCH_ID."""
    from featurelens.core.store import Store
    from featurelens.llm.batch_intent import adopt

    with Store.open(_store_path(store_path)) as store:
        click.echo(adopt(store, placeholder, batch_id))


@click.command("forget")
@click.argument("placeholder")
@store_option
def forget_command(placeholder: str, store_path: Path | None) -> None:
    """Drop submission PLACEHOLDER, which never became a provider batch: its requests are
    sent again by the next submission."""
    from featurelens.core.store import Store
    from featurelens.llm.batch_intent import forget

    with Store.open(_store_path(store_path)) as store:
        click.echo(forget(store, placeholder))
