"""The ``featurelens`` command line. Thin: every command comes from a plugin's
``register_commands`` hook (the built-in ones included), parses options, calls library
code and prints."""

from __future__ import annotations

import sys
from typing import Any

import click

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import Host, add_commands, get_host
from featurelens.core.redaction import install_log_redaction, redact
from featurelens.core.store.damage import damaged_sentence, is_damaged_store


class FeaturelensGroup(click.Group):
    """Prints a :class:`FeaturelensError` as one line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeaturelensError as error:
            click.echo(f"Error: {redact(str(error))}", err=True)
            ctx.exit(1)
        except Exception as error:
            if not is_damaged_store(error):
                raise
            click.echo(f"Error: {redact(damaged_sentence(None, error))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; run the same command again to resume.", err=True)
            ctx.exit(130)


def make_cli(host: Host) -> click.Group:
    """Build the command group with every plugin's commands added."""

    @click.group(cls=FeaturelensGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(featurelens.__version__, prog_name="featurelens")
    def cli() -> None:
        """featurelens: extract, explain and score dictionary features into a DuckDB store."""

    add_commands(host, cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    install_log_redaction()
    host = get_host()
    cli = make_cli(host)
    for failure in host.failures:
        click.echo(redact(failure.message()), err=True)
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="featurelens")


if __name__ == "__main__":
    main()
