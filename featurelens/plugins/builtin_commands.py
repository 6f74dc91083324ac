"""Built-in commands that belong to the host itself: ``sql`` and ``plugins``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import polars as pl

import featurelens
from featurelens.core.cli_options import store_option
from featurelens.core.errors import FeaturelensError
from featurelens.core.store import Store

featurelens_api = 1

_FORMATS = ("table", "csv", "json", "parquet")


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(sql_command)
    cli.add_command(plugins_group)


@click.command("sql")
@click.argument("query")
@store_option
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
@click.option("--write", is_flag=True, help="Open the store for writing (the default is read-only).")
def sql_command(query: str, store_path: Path | None, fmt: str, output: Path | None, write: bool) -> None:
    """Run a SQL QUERY against the feature store and print the result."""
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise FeaturelensError("Parquet is binary; pass --output FILE.parquet or redirect stdout.")
    with Store.open(store_path, read_only=not write) as store:
        frame = store.sql(query)
    _emit(frame, fmt, output)


def _emit(frame: pl.DataFrame, fmt: str, output: Path | None) -> None:
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
        with pl.Config(tbl_rows=200, tbl_cols=50, fmt_str_lengths=80, tbl_hide_dataframe_shape=False):
            text = str(frame) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@click.group("plugins")
def plugins_group() -> None:
    """List, install, find and create featurelens plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Include built-in plugins.")
def plugins_list(as_json: bool, show_all: bool) -> None:
    """Show installed plugins, the hooks they implement and the components they added."""
    from featurelens.core.plugins import get_host

    host = get_host()
    rows = []
    for info in host.plugins():
        if info.builtin and not show_all:
            continue
        components = [
            {"kind": c.kind, "name": c.name, "description": c.description}
            for c in host.registry.by_plugin(info.name)
        ]
        rows.append({
            "name": info.name, "package": info.package, "version": info.version,
            "builtin": info.builtin, "hooks": info.hooks, "components": components,
        })
    failures = [{"name": f.name, "stage": f.stage, "error": f.error} for f in host.failures]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": failures}, indent=2))
        return
    if not rows:
        click.echo("No plugins installed (use --all to include built-ins).")
    for row in rows:
        origin = "built-in" if row["builtin"] else f"{row['package']} {row['version']}"
        click.echo(f"{row['name']} ({origin})")
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        for c in row["components"]:
            desc = f" - {c['description']}" if c["description"] else ""
            click.echo(f"  {c['kind'].replace('_', ' ')}: {c['name']}{desc}")
    for failure in failures:
        click.echo(f"{failure['name']} (not loaded, {failure['stage']}): {failure['error']}")
