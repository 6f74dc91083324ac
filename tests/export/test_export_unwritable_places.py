"""Exports to places that cannot be written: one sentence, nothing half-published, and
a rerun resumes once the problem is gone."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.export import staging
from featurelens.export.runner import export


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "s.duckdb"
    with featurelens.open_store(path) as s:
        fill_store(s, n_features=12)
    return path


@pytest.mark.parametrize("fmt", ["neuronpedia", "html", "parquet"])
def test_output_inside_a_file_is_one_sentence(store: Path, tmp_path: Path, fmt: str) -> None:
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(FeaturelensError, match="is a file, not a folder"):
        export(store, fmt, tmp_path / "afile" / "out")
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_place_that_cannot_be_created_is_one_sentence(store: Path) -> None:
    with pytest.raises(FeaturelensError, match="Cannot write the export next to /proc/featurelens-x"):
        export(store, "neuronpedia", Path("/proc/featurelens-x"))


@pytest.mark.parametrize("fmt", ["neuronpedia", "html"])
def test_disk_full_mid_export_then_resume(store: Path, tmp_path: Path, fmt: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = staging.write_atomic
    written = {"n": 0}

    def filling_up(path: Path, data: bytes) -> None:
        written["n"] += 1
        if written["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(staging, "write_atomic", filling_up)
    out = tmp_path / "out"
    with pytest.raises(FeaturelensError) as caught:
        export(store, fmt, out)
    message = str(caught.value)
    assert "No space left on device" in message and "run the same command again to resume" in message
    assert not out.exists() and (tmp_path / "out.partial").is_dir()
    monkeypatch.setattr(staging, "write_atomic", real)
    assert export(store, fmt, out).startswith("Exported 12 ")
    assert (out / "featurelens-export.json").is_file() and not (tmp_path / "out.partial").exists()
