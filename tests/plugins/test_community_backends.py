"""The community model backends in community/: declared as plugins, listed in the index,
and (slow) installed with `featurelens plugins install PATH` next to the real
TransformerLens and nnsight, giving the same features table as the built-in hf backend.

The slow test runs in a throwaway environment layered on the one
scripts/community_libs.sh builds (.community-libs/ or $FEATURELENS_COMMUNITY_LIBS), so
both the plugins and featurelens itself (the tree under test, installed editable) come
and go with the test.
"""

from __future__ import annotations

import ast
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import featurelens
from featurelens.plugins.plugin_commands import _install_argument
from featurelens.registry.index import load_index
from plugin_env import PluginEnv, make_plugin_env

ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = ROOT / "community"
LIBS = Path(os.environ.get("FEATURELENS_COMMUNITY_LIBS", ROOT / ".community-libs"))
#: plugin name -> its package folder in community/
BACKENDS = {"transformerlens": "featurelens-transformerlens", "nnsight": "featurelens-nnsight"}
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}
HOOKPOINTS = ("blocks.1.hook_resid_post", "blocks.0.hook_mlp_out")


def _hookimpls(module: Path) -> set[str]:
    """Names of the functions in ``module`` decorated with ``@featurelens.hookimpl``."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(ast.unparse(d) == "featurelens.hookimpl" for d in node.decorator_list)}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_package_declares_its_entry_point_and_the_index_installs_it(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = COMMUNITY / BACKENDS[name]
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == BACKENDS[name]
    module = project["entry-points"]["featurelens"][name]
    init = folder / "src" / module / "__init__.py"
    assert init.is_file(), f"the entry point names {module}, which {folder} does not hold"
    assert "featurelens_api = 1" in init.read_text(encoding="utf-8")

    [entry] = [e for e in load_index() if e.name == name]
    assert (entry.package, entry.status, entry.install) == (project["name"], "repository",
                                                           f"community/{BACKENDS[name]}")
    assert set(entry.hooks) == _hookimpls(init) == {"register_model_backends"}
    assert f"featurelens{entry.featurelens}" in project["dependencies"]
    monkeypatch.chdir(ROOT)  # `plugins install NAME` from a clone's root installs the folder
    assert _install_argument(name) == str(folder.resolve())


def test_extract_names_an_unknown_backend_in_one_sentence(cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    result = cli("extract", "--model", tiny_model_dir, "--backend", "nope", "--hookpoint",
                 "blocks.0.hook_resid_post", "--store", tmp_path / "s.duckdb")
    assert result.exit_code == 1
    assert "No model backend is called 'nope'; known: hf" in result.stderr
    assert not (tmp_path / "s.duckdb").exists()


# -- slow: the real libraries ---------------------------------------------------------------
MAKE_MODEL = """
import sys, torch
from transformers import AutoModelForCausalLM
from featurelens.testing import make_tiny_llama

path = make_tiny_llama(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(path)
generator = torch.Generator().manual_seed(1)
with torch.no_grad():  # norms away from 1, so a backend that ignores one is caught
    for name, weight in model.named_parameters():
        if "norm" in name:
            weight.copy_(1 + 0.3 * torch.randn(weight.shape, generator=generator))
model.save_pretrained(path)
"""


COMPARE = """
import sys, torch
from torch.testing import assert_close
from featurelens.api import create

model, names = sys.argv[1], sys.argv[2:]
hf = create("model_backend", "hf", model, dtype="float32", device="cpu")
ids = torch.randint(0, hf.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
shared = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid",
          "blocks.0.mlp.hook_post", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
want = hf.run(ids, shared)
half = lambda act: act * 0.5
for name in names:
    other = create("model_backend", name, model, dtype="float32", device="cpu")
    assert (other.model_id, other.backend_name) == (hf.model_id, name)
    got = other.run(ids, shared)
    for hookpoint in shared:
        assert_close(got[hookpoint], want[hookpoint], rtol=1e-4, atol=1e-5)
        assert other.hookpoint_width(hookpoint) == hf.hookpoint_width(hookpoint)
    assert_close(other.logits_with_patch(ids, None), hf.logits_with_patch(ids, None), rtol=1e-4, atol=1e-5)
    for hookpoint in ("blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.0.hook_mlp_out"):
        patched = hf.logits_with_patch(ids, hookpoint, half)
        assert not torch.allclose(patched, hf.logits_with_patch(ids, None))  # the patch matters
        assert_close(other.logits_with_patch(ids, hookpoint, half), patched, rtol=1e-4, atol=1e-5)
    for fold in (False, True):
        assert_close(other.unembedding(fold), hf.unembedding(fold))
    print(name, "agrees with hf")
"""


@pytest.fixture(scope="module")
def community_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[PluginEnv, Path, dict[str, str]]:
    """The throwaway environment with featurelens and both plugins installed (what `plugins
    install` printed for each), and a tiny Llama made there."""
    if not (LIBS / "bin" / "python").exists():
        pytest.skip(f"TransformerLens and nnsight are not installed in {LIBS}; run scripts/community_libs.sh")
    root = tmp_path_factory.mktemp("community")
    env = make_plugin_env(root / "env", base=LIBS)
    env.run("-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT), env=OFFLINE_PIP)
    printed = {}
    for name, package in BACKENDS.items():
        source = shutil.copytree(COMMUNITY / package, root / package)  # pip builds in-tree
        printed[name] = env.featurelens("plugins", "install", str(source), env=OFFLINE_PIP, timeout=600).stdout
    model = root / "tiny-llama"
    env.run("-c", MAKE_MODEL, str(model))
    return env, model, printed


def _features(store: Path) -> tuple[pl.DataFrame, list[str]]:
    with featurelens.open_store(store, read_only=True) as db:
        features = db.sql("SELECT * FROM features ORDER BY dictionary_id, feature")
        backends = db.sql("SELECT backend FROM models")["backend"].to_list()
    return features, backends


@pytest.mark.slow
def test_community_backends_give_the_hf_features_table(community_env, tmp_path: Path) -> None:
    env, model, printed = community_env
    for name, package in BACKENDS.items():
        assert f"Installed plugin:\n{name} ({package} 0.1.0)" in printed[name]
        assert f"model backend: {name}" in printed[name]

    tables = {}
    for backend in ("hf", *BACKENDS):
        store = tmp_path / f"{backend}.duckdb"
        for hookpoint in HOOKPOINTS:
            env.featurelens("extract", "--model", str(model), "--backend", backend, "--hookpoint", hookpoint,
                            "--tokens", "1024", "--context", "32", "--batch-size", "8",
                            "--device", "cpu", "--store", str(store), timeout=600)
        features, recorded = _features(store)
        assert recorded == [backend]  # the models row says which backend read the model
        tables[backend] = features

    expected = tables["hf"]
    assert expected.height == 2 * 32 and expected["fire_count"].sum() > 0
    assert expected["top_logits"].list.len().min() > 0
    # nnsight runs the very modules the hf backend hooks: the same table, bit for bit
    assert_frame_equal(tables["nnsight"], expected, check_exact=True)
    # TransformerLens computes the same model with its own code: the same ids (one model id,
    # corpus id and dictionary id for the folder), counts, quantiles and logit effects up to
    # float32 rounding, which may carry an activation lying on a histogram edge into the
    # next bin, never further
    converted = tables["transformerlens"]
    assert_frame_equal(converted.drop("histogram_counts"), expected.drop("histogram_counts"),
                       check_exact=False, rel_tol=1e-4, abs_tol=1e-5)
    for mine, theirs in zip(converted["histogram_counts"], expected["histogram_counts"]):
        mine, theirs = np.cumsum(mine.to_numpy()), np.cumsum(theirs.to_numpy())
        assert mine[-1] == theirs[-1] and np.abs(mine - theirs).max() <= 1


@pytest.mark.slow
def test_community_backends_read_patch_and_unembed_as_hf_does(community_env) -> None:
    """The members extraction uses lightly (or evaluation uses) at more hookpoints:
    activations, widths, logits plain and patched, and the unembedding with and without the
    final norm folded in, each backend built through the installed plugin's registration."""
    env, model, _ = community_env
    compared = env.run("-c", COMPARE, str(model), *BACKENDS, timeout=600)
    assert compared.stdout.split("\n")[-3:] == ["transformerlens agrees with hf", "nnsight agrees with hf", ""]
