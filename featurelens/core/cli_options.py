"""Options shared by many commands, so every command spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from featurelens.core.store_location import ENV_STORE, default_store_path

F = Callable[..., Any]


def store_option(function: F) -> F:
    """``--store PATH``: the feature store file (``$FEATURELENS_STORE`` or ./featurelens.duckdb)."""
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Feature store file [default: ${ENV_STORE} or {default_store_path().name}].",
    )(function)
