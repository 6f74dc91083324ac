"""`featurelens --help` and `featurelens sql` must start fast: they may not import torch,
transformers or the LLM SDKs (``--help`` not even DuckDB or polars). Measured by the
modules a fresh interpreter holds afterwards, not by time, so the test is the same on a
loaded machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "openai", "anthropic", "tiktoken", "safetensors", "numpy")
STORE_STACK = ("duckdb", "polars", "pyarrow")

_PROBE = """
import json, sys
from featurelens.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
watched = {watched!r}
print("\\nMODULES=" + json.dumps([m for m in watched if m in sys.modules]))
"""


def _imported(args: list[str], cwd: Path) -> list[str]:
    env = os.environ | {"FEATURELENS_LOAD_PLUGINS": ""}  # built-ins only: third parties pay their own way
    code = _PROBE.format(watched=HEAVY + STORE_STACK)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)
    line = [x for x in done.stdout.splitlines() if x.startswith("MODULES=")]
    assert line, done.stdout + done.stderr
    return json.loads(line[-1].removeprefix("MODULES="))


@pytest.mark.parametrize("args", [["--help"], ["explain", "--help"], ["dictionaries", "--help"]])
def test_help_imports_neither_torch_nor_the_store_stack(tmp_path, args):
    assert _imported(args, tmp_path) == []


def test_sql_imports_the_store_but_not_torch(tmp_path):
    import featurelens

    store = tmp_path / "s.duckdb"
    featurelens.open_store(str(store)).close()
    loaded = _imported(["sql", "SELECT 42 AS answer", "--store", str(store)], tmp_path)
    assert "duckdb" in loaded  # the probe sees real imports
    assert not set(loaded) & set(HEAVY) - {"numpy"}, loaded


def test_components_still_build_after_lazy_registration():
    from featurelens.core.host.manager import create, get_registry

    registry = get_registry()
    assert {"topk", "identity", "transcoder"} <= set(registry.names("dictionary_learner"))
    assert "sparsify" in registry.names("dictionary_format")
    identity = create("dictionary_learner", "identity", 4)
    assert identity.architecture == "identity" and identity.d_sae == 4
    assert registry.get("dictionary_format", "saelens").create().detect("/nonexistent") is False
