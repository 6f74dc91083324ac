"""Real installs: the example plugin and a `plugins new` package, through pip and entry points.

Each test installs into a throwaway environment (see plugin_env.py) that shares the
project's packages but keeps its own site-packages, so the shared .venv is untouched.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from plugin_env import make_plugin_env

import featurelens
from featurelens.core.host import manager as plugins
from featurelens.registry.index import load_index

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "featurelens-example-plugin"
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}


def _fill_store(path: Path) -> None:
    """Two top examples of feature 3 that peak on ' dog', as extraction would store them."""
    with featurelens.open_store(path) as store:
        store.insert("sequences", pl.DataFrame({
            "corpus_id": ["c", "c"], "sequence_id": [0, 1], "model_id": ["m", "m"],
            "tokens": [[1, 2, 3], [4, 2, 5]],
            "token_strs": [["the", " dog", " ran"], ["a", " dog", "."]],
        }))
        store.insert("examples", pl.DataFrame({
            "dictionary_id": ["d", "d"], "feature": [3, 3], "kind": ["top", "top"],
            "rank": [0, 1], "corpus_id": ["c", "c"], "sequence_id": [0, 1],
            "activations": [[0.0, 2.0, 0.5], [0.1, 1.0, 0.0]],
            "max_activation": [2.0, 1.0], "max_position": [1, 1],
        }))


@pytest.fixture
def forget_plugin_modules():
    """Drop modules that in-process discovery imported from a throwaway environment."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("featurelens_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def _in_process_listing(cli) -> dict:
    importlib.invalidate_caches()
    plugins.reset_host()
    return json.loads(cli("plugins", "list", "--json").stdout)


def test_example_plugin_installs_lists_works_and_uninstalls(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, forget_plugin_modules: None
) -> None:
    source = shutil.copytree(EXAMPLE, tmp_path / "example-src")  # pip builds in-tree
    env = make_plugin_env(tmp_path / "env")
    installed = env.featurelens("plugins", "install", str(source), env=OFFLINE_PIP)
    assert "Installed plugin:\nexample (featurelens-example-plugin 0.1.0)" in installed.stdout

    # Discovery in this interpreter too: its site-packages on sys.path, the real
    # .dist-info/entry_points.txt that pip wrote, importlib.metadata finding it.
    monkeypatch.syspath_prepend(str(env.purelib))
    [example] = [p for p in _in_process_listing(cli)["plugins"] if p["name"] == "example"]
    assert example["package"] == "featurelens-example-plugin" and example["version"] == "0.1.0"
    assert not example["builtin"]
    assert {(c["kind"], c["name"]) for c in example["components"]} == {
        ("corpus_source", "example-lines"), ("dictionary_learner", "example-relu"),
        ("explainer", "example-keywords"), ("scorer", "example-keyword-recall"),
        ("llm_provider", "example-echo"),
    }
    [entry] = [e for e in load_index() if e.name == "example"]
    assert sorted(entry.hooks) == example["hooks"], "index.json disagrees with the example plugin"

    store = tmp_path / "store.duckdb"
    _fill_store(store)
    used = cli("example-label", "--store", store, "--dictionary", "d", "--feature", "3")
    assert used.stdout.strip() == "feature 3: fires on 'dog' (keyword recall 1.00)"
    missing = cli("example-label", "--store", store, "--dictionary", "d", "--feature", "9")
    assert missing.exit_code == 1 and "Feature 9 of dictionary 'd' has no stored" in missing.stderr

    own_tests = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests"))
    assert "4 passed" in own_tests.stdout

    removed = env.featurelens("plugins", "uninstall", "example")
    assert "Uninstalled featurelens-example-plugin." in removed.stdout
    assert not (env.purelib / "featurelens_example").exists()
    assert "example" not in [p["name"] for p in _in_process_listing(cli)["plugins"]]


def test_new_plugin_package_installs_and_its_own_test_passes(tmp_path: Path, cli) -> None:
    result = cli("plugins", "new", "demo-scorer", "--directory", tmp_path)
    assert result.exit_code == 0, result.output
    package = tmp_path / "featurelens-demo-scorer"
    assert (package / "src" / "featurelens_demo_scorer" / "__init__.py").is_file()
    pyproject = (package / "pyproject.toml").read_text()
    assert '[project.entry-points.featurelens]\ndemo-scorer = "featurelens_demo_scorer"' in pyproject

    env = make_plugin_env(tmp_path / "env")  # plain pip here: `plugins install` is tested above
    env.run("-m", "pip", "install", "-q", "--no-deps", str(package), env=OFFLINE_PIP)
    assert (env.purelib / "featurelens_demo_scorer" / "__init__.py").is_file()
    own_tests = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests"))
    assert "1 passed" in own_tests.stdout


def test_new_refuses_bad_names_and_existing_folders(tmp_path: Path, cli) -> None:
    bad = cli("plugins", "new", "Bad_Name", "--directory", tmp_path)
    assert bad.exit_code == 1 and "not a usable plugin name" in bad.stderr
    (tmp_path / "featurelens-taken").mkdir()
    (tmp_path / "featurelens-taken" / "keep.txt").write_text("mine")
    taken = cli("plugins", "new", "featurelens-taken", "--directory", tmp_path)
    assert taken.exit_code == 1 and "already exists and is not empty" in taken.stderr
    assert (tmp_path / "featurelens-taken" / "keep.txt").read_text() == "mine"


def test_search_matches_every_word(cli) -> None:
    result = cli("plugins", "search", "llm provider", "--json")
    names = {e["name"] for e in json.loads(result.stdout)}
    assert names == {"example", "vllm"}
    assert cli("plugins", "search", "backend nnsight").stdout.startswith("nnsight  (featurelens-nnsight; repository; compatible)")
    assert "No plugin in the index matches 'zzz'" in cli("plugins", "search", "zzz").stdout


def test_index_entries_are_honest_and_complete() -> None:
    entries = load_index()
    assert len({e.name for e in entries}) == len(entries)
    for entry in entries:
        assert entry.compatible()
        assert entry.package.startswith("featurelens-")
        if entry.status == "planned":
            assert entry.install is None  # nothing to install yet, and the index says so
        if entry.status in ("example", "repository"):
            assert (ROOT / entry.install).is_dir()


def test_index_entry_with_unknown_hook_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "index.json"
    bad.write_text(json.dumps({"plugins": [{
        "name": "x", "package": "featurelens-x", "description": "d", "hooks": ["register_widgets"],
        "featurelens": ">=0.1", "status": "available"}]}))
    with pytest.raises(featurelens.core.errors.PluginError, match="unknown hooks"):
        load_index(bad)


def test_install_refuses_planned_and_misplaced_example(cli, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    planned = cli("plugins", "install", "vllm")
    assert planned.exit_code == 1
    assert planned.stderr.strip() == (
        "Error: featurelens-vllm is only planned in the plugin index (nobody has published it "
        "yet); see `featurelens plugins search` for what exists.")
    monkeypatch.chdir(tmp_path)
    elsewhere = cli("plugins", "install", "example")
    assert elsewhere.exit_code == 1 and "root of a featurelens clone" in elsewhere.stderr


def test_uninstall_refuses_builtins_featurelens_and_unknown(cli) -> None:
    builtin = cli("plugins", "uninstall", "featurelens.plugins.sql_command")
    assert builtin.exit_code == 1 and "built into featurelens" in builtin.stderr
    itself = cli("plugins", "uninstall", "featurelens")
    assert itself.exit_code == 1 and "pip uninstall featurelens" in itself.stderr
    unknown = cli("plugins", "uninstall", "featurelens-nothing-here")
    assert unknown.exit_code == 1 and "No plugin or package 'featurelens-nothing-here'" in unknown.stderr
