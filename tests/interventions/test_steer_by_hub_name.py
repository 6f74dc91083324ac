"""featurelens steer takes a dictionary by name (hf:<repo>[/<folder>]) like extract and
dictionaries import do, from a Hugging Face cache built here (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurelens.core.host.manager import create
from featurelens.plugins.formats.sparsify import SparsifyFormat

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Path:
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--sae-tiny" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (cache / "models--org--sae-tiny" / "refs").mkdir()
    (cache / "models--org--sae-tiny" / "refs" / "main").write_text(COMMIT)
    width = json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    sae = create("dictionary_learner", "topk", width, 4 * width, k=4)
    sae.hookpoint = "blocks.1.hook_resid_post"
    SparsifyFormat().save(sae, str(snapshot))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_steer_by_hf_name(cli, hf_cache: Path, tiny_model_dir: Path, tmp_path: Path, one_thread) -> None:
    args = ["steer", "--model", tiny_model_dir, "--hookpoint", "blocks.1.hook_resid_post", "--store",
            tmp_path / "s.duckdb", "--device", "cpu", "--max-tokens", 3, "--temperature", 0,
            "--feature", "2=+6", "--prompt", "The quick", "--json"]
    result = cli(*args[:1], "--dictionary", "hf:org/sae-tiny/layers.1", *args[1:])
    assert result.exit_code == 0, result.output[-1000:]
    assert json.loads(result.output[result.output.index("{"):])["edits"] == ["2=+6"]
    missing = cli(*args[:1], "--dictionary", "hf:org/absent", *args[1:])
    assert missing.exit_code == 1
    assert "is not in the Hugging Face cache" in missing.output.strip().splitlines()[-1]
