"""Exports spread over worker processes write the same files as one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.export import html
from featurelens.export import workers
from featurelens.export.neuronpedia import layout
from featurelens.export.runner import export


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("workers") / "s.duckdb"
    with featurelens.open_store(path) as s:
        fill_store(s, n_features=23)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt, module, batch", [("neuronpedia", layout, "BATCH_SIZE"), ("html", html, "BATCH")])
def test_worker_processes_write_what_one_process_writes(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         fmt: str, module: object, batch: str) -> None:
    monkeypatch.setattr(module, batch, 5)  # five batches (the parent cuts them), some of them resumed
    export(store, fmt, tmp_path / "one", processes=1)
    export(store, fmt, tmp_path / "two", processes=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) > 8
    assert one == two


def test_an_error_in_a_worker_is_the_callers_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as s:
        fill_store(s, n_features=6)
        s.execute("DROP TABLE sequences")  # only the workers read the windows' tokens
    with pytest.raises(FeaturelensError, match="Reading the store .* failed"):
        export(path, "neuronpedia", tmp_path / "np", processes=2)
    with pytest.raises(RuntimeError, match="worker processes started by run"):
        workers.store()  # this process is no worker


def test_large_exports_use_every_core_small_ones_none() -> None:
    assert workers.processes_for(100) == 1
    assert workers.processes_for(100, requested=3) == 3
    assert 1 <= workers.processes_for(workers.MIN_FEATURES) <= workers.MAX_PROCESSES
