"""Shared by the Ray tests: a tiny extraction job, its in-process store, a table-by-table check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from extract_calls import extract_with

import featurelens

TABLES = {
    "features": "SELECT * FROM features ORDER BY feature",
    "examples": "SELECT * FROM examples ORDER BY feature, kind, rank",
    "sequences": "SELECT * FROM sequences ORDER BY sequence_id",
    "models": "SELECT * EXCLUDE (created_at) FROM models",
    "dictionaries": "SELECT * EXCLUDE (created_at) FROM dictionaries",
    "runs": "SELECT run_id, kind, status, config, progress FROM runs",
}


def tables(store: Path) -> dict:
    with featurelens.open_store(store, read_only=True) as db:
        return {name: db.sql(query) for name, query in TABLES.items()}


def assert_same_store(actual: Path, expected: Path) -> None:
    """Table by table; every column exact (float sums are exact here too: see docs/scale.md)."""
    got, want = tables(actual), tables(expected)
    for name in TABLES:
        assert got[name].height > 0, f"{name} is empty"
        assert got[name].equals(want[name]), f"{name} differs from the in-process run"


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """A saved TopK dictionary and a corpus full of repeated windows (ties everywhere)."""
    from featurelens.core.host.manager import create
    from featurelens.core.training.api import save_dictionary
    from featurelens.testing import SAMPLE_TEXT

    folder = tmp_path_factory.mktemp("scale-job")
    torch.manual_seed(0)
    save_dictionary(create("dictionary_learner", "topk", 32, 64, k=6), folder / "sae")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(f"{i}: {SAMPLE_TEXT[i % 4]}" for i in range(160)), encoding="utf-8")
    return dict(model=str(tiny_model_dir), hookpoint="blocks.1.hook_resid_post",
                dictionary=str(folder / "sae"), corpus=str(corpus), tokens=48 * 16, batch_size=2,
                context=16, top_k=4, n_quantile=6, quantile_bins_count=3, n_random=5, progress=False,
                device="cpu", split="all")


@pytest.fixture(scope="module")
def expected(job: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("in-process") / "store.duckdb"
    extract_with(store=store, **job)
    return store
