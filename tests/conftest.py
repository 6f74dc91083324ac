"""Shared fixtures: a temporary store, a CLI runner over a freshly built host."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import featurelens
from featurelens.core.host import manager as plugins


@pytest.fixture(autouse=True)
def _fresh_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees a host built from the current environment, not a cached one."""
    plugins.reset_host()
    monkeypatch.delenv("FEATURELENS_STORE", raising=False)
    yield
    plugins.reset_host()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def store(store_path: Path):
    with featurelens.open_store(store_path) as s:
        yield s


@pytest.fixture
def cli():
    """Invoke the CLI in-process: ``cli("sql", "SELECT 1", "--store", p)``."""
    from featurelens.cli import make_cli

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(make_cli(plugins.get_host()), [str(a) for a in args], input=input,
                             catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama and its tokenizer, saved once per test session."""
    from featurelens.testing import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def one_thread():
    """Tiny matrices: one torch thread is fastest and keeps results identical across processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path):
    """The ``hf`` backend over the tiny Llama, loaded once per session (read-only use)."""
    from featurelens.core.host.manager import create

    return create("model_backend", "hf", str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``install(package, entry_name, module, source)``: a real plugin distribution on
    sys.path, found by entry-point discovery like an installed one."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(plugins.ENV_LOAD_PLUGINS, raising=False)
    modules: list[str] = []

    def install(package: str, entry_name: str, module: str, source: str) -> None:
        (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = root / f"{package.replace('-', '_')}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[featurelens]\n{entry_name} = {module}\n")
        modules.append(module)
        importlib.invalidate_caches()

    yield install
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture(scope="session")
def graph_store(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """A store holding a small attribution graph over an extracted transcoder set (tests/graph_store.py);
    one per session, so tests only read it."""
    from graph_store import build_graph_store

    work = tmp_path_factory.mktemp("graph-store")
    return build_graph_store(work / "store.duckdb", tiny_model_dir, work)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: what the hub-name tests fill by hand."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
