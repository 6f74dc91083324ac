"""`-o` has one meaning in every command: `--output`. explain, score and label (which write
no file) still accept their old `-o KEY=VALUE` as `--option`, with a deprecation warning."""

from __future__ import annotations

import click
import pytest
from llm_fixtures import fill

import featurelens
from featurelens.cli import make_cli
from featurelens.core.cli.compat import DEPRECATED_O, rewrite_short_option
from featurelens.core.host.manager import get_host


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_short_o_is_output():
    seen = []
    for name, command in _commands(make_cli(get_host())):
        for param in command.params:
            if "-o" in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                assert "--output" in param.opts, f"{name}: -o is {param.opts}"
                seen.append(name)
    assert {"sql", "train", "export", "dictionaries export"} <= set(seen)
    assert not {"explain", "score", "label"} & set(seen)


def test_rewrite_keeps_everything_after_double_dash():
    assert rewrite_short_option(["-o", "a=1", "-ob=2", "--", "-o"]) == (
        ["--option", "a=1", "--option", "b=2", "--", "-o"], True)
    assert rewrite_short_option(["--output", "x"]) == (["--output", "x"], False)


@pytest.fixture
def filled(store_path):
    with featurelens.open_store(store_path) as store:
        fill(store, 10)
    return store_path


@pytest.mark.parametrize("spelling", [["-o", "colour=blue"], ["-ocolour=blue"], ["--option", "colour=blue"]])
def test_old_spelling_still_reaches_option_with_a_warning(cli, filled, spelling):
    result = cli("explain", "--dry-run", *spelling, "--store", filled)
    assert result.exit_code == 1
    assert "does not take the option(s) colour" in result.output  # the value reached --option
    assert (DEPRECATED_O in result.output) == (spelling[0] != "--option")


def test_help_names_the_deprecation(cli):
    assert "deprecated" in cli("score", "--help").output
