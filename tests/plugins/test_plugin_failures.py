"""Broken plugins are reported in one line each and the CLI keeps working.

Each plugin here is a real distribution: a module plus a ``.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` in a directory put on ``sys.path``, so discovery
goes through ``importlib.metadata`` exactly as for a pip-installed package.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from featurelens.cli import main
from featurelens.core.host import manager as plugins

GOOD = """
    import featurelens

    class Scorer:
        name = "{component}"
        def requests(self, record, explanation, capabilities):
            return []
        def score(self, record, explanation, responses):
            return None

    @featurelens.hookimpl
    def register_scorers(register):
        register("{component}", Scorer, description="from {module}")
"""


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The real entry point (failures are printed by it, before the command runs)."""
    plugins.reset_host()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def _listing(capsys) -> tuple[dict, list[str]]:
    code, out, err = run_cli(capsys, "plugins", "list", "--json")
    assert code == 0
    return json.loads(out), [line for line in err.splitlines() if line]


def _names(listing: dict) -> set[str]:
    return {p["name"] for p in listing["plugins"]}


def test_good_plugin_is_discovered_with_provenance(site, capsys) -> None:
    site("featurelens-good", "good", "fl_good", GOOD.format(component="good-score", module="fl_good"))
    listing, err = _listing(capsys)
    assert err == []
    [good] = [p for p in listing["plugins"] if p["name"] == "good"]
    assert (good["package"], good["version"], good["hooks"]) == ("featurelens-good", "0.3", ["register_scorers"])
    assert good["components"] == [{"kind": "scorer", "name": "good-score", "description": "from fl_good"}]


def test_plugin_that_fails_to_import(site, capsys, store_path: Path) -> None:
    site("featurelens-broken", "broken", "fl_broken", "import numpy\nraise ImportError('needs libfoo 2')\n")
    site("featurelens-good", "good", "fl_good", GOOD.format(component="good-score", module="fl_good"))
    listing, err = _listing(capsys)
    assert err == [
        "featurelens: plugin 'broken' was not loaded (import): ImportError: needs libfoo 2. To skip "
        "it, set FEATURELENS_LOAD_PLUGINS to a comma-separated list of the plugins you want "
        "(empty for none), or uninstall it."
    ]
    assert "good" in _names(listing) and "broken" not in _names(listing)
    code, out, _ = run_cli(capsys, "sql", "SELECT 41 + 1 AS answer", "--store", str(store_path),
                           "--write", "--format", "csv")
    assert (code, out) == (0, "answer\n42\n")


def test_plugin_that_raises_while_registering_leaves_nothing(site, capsys) -> None:
    site("featurelens-half", "half", "fl_half", """
        import featurelens

        class Thing:
            pass

        @featurelens.hookimpl
        def register_explainers(register):
            register("half-explainer", Thing)

        @featurelens.hookimpl
        def register_scorers(register):
            raise RuntimeError("config file missing")
    """)
    listing, err = _listing(capsys)
    assert len(err) == 1
    assert err[0].startswith("featurelens: plugin 'half' was not loaded (register): "
                             "RuntimeError: config file missing.")
    assert "half" not in _names(listing)
    assert plugins.get_host().registry.components["explainer"].get("half-explainer") is None


def test_taken_name_is_refused_naming_both_plugins(site, capsys) -> None:
    site("featurelens-first", "first", "fl_first", GOOD.format(component="shared", module="fl_first"))
    site("featurelens-second", "second", "fl_second", GOOD.format(component="shared", module="fl_second"))
    listing, err = _listing(capsys)
    [message] = err
    loaded = _names(listing) & {"first", "second"}
    assert len(loaded) == 1
    [winner] = loaded
    [loser] = {"first", "second"} - loaded
    assert (f"plugin {loser!r} was not loaded (register): Plugin {loser!r} tried to register "
            f"scorer 'shared', which plugin {winner!r} already provides") in message
    assert plugins.get_host().registry.get("scorer", "shared").plugin == winner


def test_unsupported_plugin_api_version(site, capsys) -> None:
    site("featurelens-future", "future", "fl_future",
         "featurelens_api = [7, 8]\n" + textwrap.dedent(GOOD.format(component="future", module="m")))
    listing, err = _listing(capsys)
    assert err == [
        "featurelens: plugin 'future' was not loaded (api-version): it was written for featurelens "
        "plugin API 7, 8, but this featurelens 0.1.0 implements API 1; install a version of the "
        "plugin made for it. To skip it, set FEATURELENS_LOAD_PLUGINS to a comma-separated list "
        "of the plugins you want (empty for none), or uninstall it."
    ]
    assert "future" not in _names(listing)


def test_hook_matching_no_hookspec_is_refused_by_pluggy(site, capsys) -> None:
    site("featurelens-typo", "typo", "fl_typo", """
        import featurelens

        @featurelens.hookimpl
        def register_scorer(register):  # missing the final s
            register("never", object)
    """)
    listing, err = _listing(capsys)
    [message] = err
    assert message.startswith("featurelens: plugin 'typo' was not loaded (hooks): ")
    assert "unknown hook 'register_scorer'" in message
    assert "typo" not in _names(listing)


def test_hook_with_wrong_arguments_is_refused_by_pluggy(site, capsys) -> None:
    site("featurelens-args", "args", "fl_args", """
        import featurelens

        @featurelens.hookimpl
        def register_scorers(register, extra):
            pass
    """)
    listing, err = _listing(capsys)
    assert len(err) == 1 and "plugin 'args' was not loaded (hooks)" in err[0] and "extra" in err[0]


def test_command_name_clash_keeps_the_builtin(site, capsys, store_path: Path) -> None:
    site("featurelens-sqlish", "sqlish", "fl_sqlish", """
        import click, featurelens

        @featurelens.hookimpl
        def register_corpus_sources(register):
            register("sqlish-corpus", list)

        @featurelens.hookimpl
        def register_commands(cli):
            @cli.command("sql")
            def hijack():
                click.echo("hijacked")
    """)
    code, out, err = run_cli(capsys, "sql", "SELECT 1 AS one", "--store", str(store_path),
                             "--write", "--format", "csv")
    assert (code, out) == (0, "one\n1\n")
    assert ("plugin 'sqlish' was not loaded (register): it adds the command 'sql', which plugin "
            "'featurelens.plugins.sql_command' already provides") in err
    host = plugins.get_host()  # left out entirely, not half-loaded
    assert "sqlish" not in host.infos and "sqlish-corpus" not in host.registry.names("corpus_source")


def test_load_plugins_variable_filters(site, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    site("featurelens-alpha", "alpha", "fl_alpha", GOOD.format(component="alpha", module="a"))
    site("featurelens-beta", "beta", "fl_beta", GOOD.format(component="beta", module="b"))
    site("featurelens-broken", "broken", "fl_broken", "raise ImportError('boom')\n")
    assert {"alpha", "beta"} <= _names(_listing(capsys)[0])

    monkeypatch.setenv(plugins.ENV_LOAD_PLUGINS, "alpha")
    listing, err = _listing(capsys)
    assert err == [] and {"alpha"} == _names(listing) - {p["name"] for p in listing["plugins"] if p["builtin"]}

    monkeypatch.setenv(plugins.ENV_LOAD_PLUGINS, "featurelens_beta")  # by package, any spelling
    listing, err = _listing(capsys)
    assert err == [] and "beta" in _names(listing) and "alpha" not in _names(listing)

    monkeypatch.setenv(plugins.ENV_LOAD_PLUGINS, "")
    listing, err = _listing(capsys)
    assert err == [] and not [p for p in listing["plugins"] if not p["builtin"]]


def test_plugins_list_text_shows_failures(site, capsys) -> None:
    site("featurelens-broken", "broken", "fl_broken", "raise ImportError('boom')\n")
    code, out, err = run_cli(capsys, "plugins", "list")
    assert code == 0
    assert "broken (not loaded, import): ImportError: boom" in out
    assert err.count("plugin 'broken' was not loaded") == 1


def test_two_entry_points_for_one_module(site, capsys) -> None:
    site("featurelens-twin", "twin", "fl_twin", GOOD.format(component="twin", module="fl_twin"))
    site("featurelens-alias", "alias", "fl_twin", GOOD.format(component="twin", module="fl_twin"))
    listing, err = _listing(capsys)
    [message] = err
    assert "is already loaded as plugin" in message and "two entry points name the same module" in message
    assert len(_names(listing) & {"twin", "alias"}) == 1


def test_two_packages_with_one_plugin_name(site, capsys) -> None:
    site("featurelens-twin", "twin", "fl_twin", GOOD.format(component="twin", module="fl_twin"))
    site("featurelens-clone", "twin", "fl_clone", GOOD.format(component="clone", module="fl_clone"))
    listing, err = _listing(capsys)
    [message] = err
    assert "another plugin is already loaded under the name 'twin' by featurelens-" in message
    assert "twin" in _names(listing)
