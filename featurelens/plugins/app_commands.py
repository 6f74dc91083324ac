"""The application commands: ``serve`` (feature browser), ``export`` and ``run``.

Thin: they parse options, call :mod:`featurelens.browser`, :mod:`featurelens.export`
and :mod:`featurelens.core.pipeline`, and print.
"""

from __future__ import annotations

from pathlib import Path

import click

import featurelens
from featurelens.core.cli_options import store_option

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(serve_command)
    cli.add_command(export_command)


@click.command("serve")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep the loopback default unless you mean to share it.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
def serve_command(store_path: Path | None, host: str, port: int) -> None:
    """Browse the feature store in a local web page (read-only; works offline)."""
    from featurelens.browser.server import is_loopback, make_server, url_of

    server = make_server(store_path, host, port)
    if not is_loopback(host):
        click.echo(f"Warning: listening on {host}: anyone who can reach this machine can read the store.",
                   err=True)
    click.echo(f"Serving {server.browser_data.path} at {url_of(server)}  (Ctrl-C to stop)", err=True)  # type: ignore[attr-defined]
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        server.server_close()
        server.browser_data.close()  # type: ignore[attr-defined]


@click.command("export")
@store_option
@click.option("--format", "fmt", type=click.Choice(["neuronpedia", "parquet", "html"]), required=True,
              help="neuronpedia: feature JSON; parquet: one file per table; html: static report.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write [default: export-<format>].")
@click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features.")
@click.option("--where", default=None,
              help="SQL condition on the features table, e.g. \"density < 0.01\".")
def export_command(store_path: Path | None, fmt: str, output: Path | None, dictionary_id: str | None,
                   where: str | None) -> None:
    """Export features as Neuronpedia JSON, Parquet tables or a static HTML report."""
    from featurelens.export.runner import export

    target = output or Path(f"export-{fmt}")
    summary = export(store_path, fmt, target, dictionary_id=dictionary_id, where=where)
    click.echo(summary)
