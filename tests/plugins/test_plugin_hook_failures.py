"""A plugin that imports fine and then misbehaves inside a start-up hook (issue 26, item 6):
it raises, calls ``sys.exit``, raises ``KeyboardInterrupt`` or never returns. Each is
recorded as a plugin failure (one line on stderr), the plugin is left out, and the
command goes on: ``plugins list`` and ``sql`` work, with the well-behaved plugin loaded."""

from __future__ import annotations

import json

import pytest
from tests.plugins.test_plugin_failures import GOOD, run_cli

BODIES = {
    "raises": "raise RuntimeError('hook exploded')",
    "exits": "raise SystemExit(5)",
    "interrupts": "raise KeyboardInterrupt",
    "hangs": "import time; time.sleep(3600)",
}
HOOKS = {
    "register_scorers": "def register_scorers(register):",
    "register_commands": "def register_commands(cli):",
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
@pytest.mark.parametrize("body", sorted(BODIES))
def test_a_hook_that_fails_is_isolated_like_an_import_failure(site, capsys, monkeypatch, store_path, hook, body):
    monkeypatch.setenv("FEATURELENS_PLUGIN_IMPORT_TIMEOUT", "1")
    site("featurelens-hostile", "hostile", "fl_hostile",
         f"import featurelens\n\n@featurelens.hookimpl\n{HOOKS[hook]}\n    {BODIES[body]}\n")
    site("featurelens-good", "good", "fl_good", GOOD.format(component="good-score", module="fl_good"))
    code, out, err = run_cli(capsys, "plugins", "list", "--json")
    assert code == 0, (out, err)
    names = {p["name"] for p in json.loads(out)["plugins"]}
    assert "good" in names and "hostile" not in names
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("featurelens: plugin 'hostile' was not loaded (register)"), err
    assert "Traceback" not in err
    code, out, _ = run_cli(capsys, "sql", "SELECT 41 + 1 AS answer", "--store", str(store_path),
                           "--write", "--format", "csv")
    assert (code, out) == (0, "answer\n42\n")
