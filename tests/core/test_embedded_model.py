"""The embedded SmolLM2: cached conversion, corruption detection, models list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.model import embedded


def _fake_cache(root: Path, files: dict[str, bytes], manifest: dict | None) -> Path:
    folder = root / "models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    if manifest is not None:
        (folder / "featurelens-manifest.json").write_text(json.dumps(manifest))
    return folder


def test_complete_cache_is_used_without_converting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embedded.ENV_CACHE, str(tmp_path))
    folder = _fake_cache(tmp_path, {"config.json": b"{}", "model.safetensors": b"x" * 10},
                         {"files": {"config.json": 2, "model.safetensors": 10}})
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("must not convert again"))
    assert embedded.embedded_model_path() == folder
    assert embedded.embedded_model_path("default") == folder


def test_corrupt_cache_is_one_sentence_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embedded.ENV_CACHE, str(tmp_path))
    _fake_cache(tmp_path, {"config.json": b"{}", "model.safetensors": b"x" * 3},
                {"files": {"config.json": 2, "model.safetensors": 10}})
    with pytest.raises(FeaturelensError, match=r"corrupt \(model.safetensors differ.*delete that folder"):
        embedded.embedded_model_path()


def test_cache_without_manifest_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embedded.ENV_CACHE, str(tmp_path))
    _fake_cache(tmp_path, {"config.json": b"{}"}, None)
    with pytest.raises(FeaturelensError, match="incomplete or corrupt"):
        embedded.embedded_model_path()


def test_abandoned_temp_folders_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "smollm2-135m-instruct"
    dead = tmp_path / ".smollm2-135m-instruct-999999999-abc"
    alive = tmp_path / f".smollm2-135m-instruct-{os.getpid()}-def"
    dead.mkdir()
    alive.mkdir()
    embedded._remove_abandoned(target)
    assert not dead.exists() and alive.exists()


def test_unknown_embedded_name() -> None:
    with pytest.raises(FeaturelensError, match="not an embedded model"):
        embedded.embedded_model_path("gpt5")


def test_models_list_shows_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    monkeypatch.setenv(embedded.ENV_CACHE, str(tmp_path))
    result = cli("models", "list")
    assert result.exit_code == 0
    assert "smollm2" in result.output and "not yet converted" in result.output
    assert str(tmp_path) in result.output


@pytest.mark.slow
def test_conversion_is_atomic_and_loads(tmp_path: Path) -> None:
    """Kill a conversion half-way: no cache appears; a full one then loads and is detected."""
    env = {**os.environ, embedded.ENV_CACHE: str(tmp_path)}
    code = "from featurelens.core.model.embedded import embedded_model_path as f; print(f())"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    models = tmp_path / "models"
    deadline = time.time() + 120
    while time.time() < deadline and not (models.exists() and any(models.iterdir())):
        time.sleep(0.2)
    time.sleep(3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (models / "smollm2-135m-instruct").exists()
    assert list(models.glob(".smollm2-135m-instruct-*"))  # the killed conversion's temp folder
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert not list(models.glob(".smollm2-135m-instruct-*"))  # removed by the next conversion
    folder = models / "smollm2-135m-instruct"
    assert (folder / "featurelens-manifest.json").exists()
    from featurelens.plugins.hf_backend import HFBackend

    os.environ[embedded.ENV_CACHE] = str(tmp_path)
    try:
        backend = HFBackend("smollm2", device="cpu")
        assert (backend.n_layers, backend.d_model) == (30, 576)
        assert backend.hookpoint_width("blocks.6.hook_resid_post") == 576
        with open(folder / "model.safetensors", "r+b") as handle:
            handle.truncate(1000)
        with pytest.raises(FeaturelensError, match="corrupt"):
            HFBackend("smollm2")
    finally:
        del os.environ[embedded.ENV_CACHE]
