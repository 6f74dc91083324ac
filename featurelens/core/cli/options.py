"""Options shared by many commands, so every command spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from featurelens.core.errors import FeaturelensError
from featurelens.core.store.location import ENV_STORE, default_store_path

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


def existing_store(store_path: Path | None) -> Path:
    """Commands that read an existing store (``batches``) refuse a missing one; a mistyped path must not create an empty one."""
    path = store_path or default_store_path()
    if not path.exists():
        raise FeaturelensError(f"There is no feature store at {path}; point --store or "
                               f"${ENV_STORE} at the store the batches were submitted from.")
    return path
