"""Old command-line spellings that still work, with a warning that names the new one.

``-o`` means ``--output`` in every command that writes a file or folder (``sql``,
``train``, ``export``, ``dictionaries export``). ``explain``, ``score`` and ``label`` used
to read ``-o KEY=VALUE`` as ``--option``; they have no output, so the old spelling is
still accepted there, rewritten to ``--option`` with a deprecation warning on stderr,
instead of failing scripts that use it.
"""

from __future__ import annotations

from typing import Any

import click

DEPRECATED_O = ("Warning: '-o KEY=VALUE' is deprecated here; write '--option KEY=VALUE' "
                "(-o means --output in every featurelens command).")


def rewrite_short_option(args: list[str]) -> tuple[list[str], bool]:
    """``args`` with ``-o VALUE`` / ``-oVALUE`` turned into ``--option VALUE``; whether any was."""
    out: list[str] = []
    changed = False
    for position, arg in enumerate(args):
        if arg == "--":
            return out + args[position:], changed
        if arg == "-o":
            out.append("--option")
            changed = True
        elif arg.startswith("-o") and not arg.startswith("--"):
            out += ["--option", arg[2:].removeprefix("=")]
            changed = True
        else:
            out.append(arg)
    return out, changed


class OptionShorthandCommand(click.Command):
    """A command whose ``--option`` is still reachable as ``-o`` (deprecated)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args, changed = rewrite_short_option(list(args))
        if changed:
            click.echo(DEPRECATED_O, err=True)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text("'-o KEY=VALUE' still works as --option but is deprecated.")
