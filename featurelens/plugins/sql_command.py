"""Built-in commands that belong to the host itself: ``sql`` and ``plugins``
(the latter lives in :mod:`featurelens.plugins.plugin_commands`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

import featurelens
from featurelens.core.cli.options import store_option
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.plugin_commands import plugins_group

if TYPE_CHECKING:
    import polars as pl

featurelens_api = 1

_FORMATS = ("table", "csv", "json", "parquet")


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    """The host's own commands, added through the same hook as any plugin's."""
    cli.add_command(sql_command)
    cli.add_command(plugins_group)


@click.command("sql")
@click.argument("query")
@store_option
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
@click.option("--write", is_flag=True, help="Open the store for writing and allow statements that write "
              "files (the default reads only, and writes nothing anywhere).")
def sql_command(query: str, store_path: Path | None, fmt: str, output: Path | None, write: bool) -> None:
    """Run a SQL QUERY against the feature store and print the result.

    Without --write nothing is written anywhere: queries may read the store and local
    files (read_csv, read_parquet, ATTACH ... (READ_ONLY)); COPY, EXPORT DATABASE, a
    writable ATTACH, INSTALL, SET and every statement that changes something are refused.
    """
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise FeaturelensError("Parquet is binary; pass --output FILE.parquet or redirect stdout.")
    from featurelens.core.store import (
        sql_guard,  # imported here: `featurelens --help` needs no DuckDB
    )
    from featurelens.core.store.database import Store

    with Store.open(store_path, read_only=not write) as store:
        if not write:
            sql_guard.lock_down(store.con)
            sql_guard.check_read_only(store.con, query)
        frame = store.sql(query)
    _emit(frame, fmt, output)


def _emit(frame: pl.DataFrame, fmt: str, output: Path | None) -> None:
    import polars as pl

    from featurelens.core.redaction import redact

    # text read back from a store written before redaction existed may hold a key
    text_columns = [name for name, dtype in frame.schema.items() if dtype == pl.Utf8]
    if text_columns:
        frame = frame.with_columns(pl.col(name).map_elements(redact, return_dtype=pl.Utf8)
                                   for name in text_columns)
    if fmt == "parquet":
        if output is not None:
            frame.write_parquet(output)
        else:
            frame.write_parquet(sys.stdout.buffer)
        return
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=str, indent=None) + "\n"
    else:
        import polars as pl

        with pl.Config(tbl_rows=200, tbl_cols=50, fmt_str_lengths=80, tbl_hide_dataframe_shape=False):
            text = str(frame) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
