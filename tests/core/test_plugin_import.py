"""A plugin cannot silence or hang the CLI at import, and unknown wanted names are reported."""

from __future__ import annotations

import json
import time

import pytest

from featurelens.cli import main
from featurelens.core.host import manager as plugins

GOOD = """
    import featurelens

    class Scorer:
        name = "good-score"
        def requests(self, record, explanation, capabilities):
            return []
        def score(self, record, explanation, responses):
            return None

    @featurelens.hookimpl
    def register_scorers(register):
        register("good-score", Scorer, description="good")
"""


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, list[str]]:
    plugins.reset_host()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, [line for line in err.splitlines() if line]


def test_sys_exit_at_import_is_a_plugin_failure(site, capsys):
    site("featurelens-quitter", "quitter", "fl_quitter", "import sys\nsys.exit(3)\n")
    site("featurelens-good", "good", "fl_good", GOOD)
    code, out, err = run_cli(capsys, "--help")
    assert code == 0 and "Usage:" in out
    assert err == ["featurelens: plugin 'quitter' was not loaded (import): it called sys.exit(3) while "
                   "being imported, which a plugin must never do. To skip it, set "
                   "FEATURELENS_LOAD_PLUGINS to a comma-separated list of the plugins you want "
                   "(empty for none), or uninstall it."]
    code, out, _ = run_cli(capsys, "plugins", "list", "--json")
    listing = json.loads(out)
    assert code == 0 and "good" in {p["name"] for p in listing["plugins"]}
    assert "quitter" not in {p["name"] for p in listing["plugins"]}


def test_hanging_import_is_cut_off_with_a_clear_line(site, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FEATURELENS_PLUGIN_IMPORT_TIMEOUT", "1")
    site("featurelens-hang", "hang", "fl_hang", "import time\ntime.sleep(120)\n")
    site("featurelens-good", "good", "fl_good", GOOD)
    started = time.monotonic()
    code, out, err = run_cli(capsys, "plugins", "list", "--json")
    assert time.monotonic() - started < 15
    assert code == 0 and '"good"' in out
    assert len(err) == 1
    assert err[0].startswith("featurelens: plugin 'hang' was not loaded (import): importing it did "
                             "not finish within 1 s")
    assert "FEATURELENS_PLUGIN_IMPORT_TIMEOUT" in err[0]


def test_unknown_wanted_names_are_reported(site, capsys, monkeypatch: pytest.MonkeyPatch):
    site("featurelens-good", "good", "fl_good", GOOD)
    monkeypatch.setenv(plugins.ENV_LOAD_PLUGINS, "good,godo, ")
    code, out, err = run_cli(capsys, "plugins", "list", "--json")
    assert code == 0 and '"good"' in out
    assert err == ["featurelens: FEATURELENS_LOAD_PLUGINS names 'godo', but no installed plugin or "
                   "package has that name (installed: featurelens-good, good); fix the name (see "
                   "featurelens plugins list) or install that plugin."]


def test_import_errors_are_still_one_line(site, capsys):
    site("featurelens-broken", "broken", "fl_broken", "raise RuntimeError('needs a GPU')\n")
    code, _, err = run_cli(capsys, "plugins", "list")
    assert code == 0
    assert err[0].startswith("featurelens: plugin 'broken' was not loaded (import): RuntimeError: needs a GPU.")
