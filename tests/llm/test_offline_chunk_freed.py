"""Offline stages free each chunk's records while the cyclic collector is still paused.

The engine draws a page of records' jobs and finishes the offline ones under one pause
(core/gc_pause): when the pause ends nothing of the page is alive, so the collector never
walks a chunk's millions of small objects. A record kept past the pause (by the job
source, the engine or a scorer) would be freed with the collector on and fail here.
"""

from __future__ import annotations

import gc
import weakref

import pytest

import featurelens
import featurelens.core.selection as selection_module
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.core.model.sentence_embedding import default_model_path, embed
from featurelens.llm.engine import EngineSettings
from featurelens.scorers.score_jobs import ScoreSpec, score_features


@pytest.fixture
def freed_paused(monkeypatch) -> list[bool]:
    """For every record read, whether the collector was off when it was freed."""
    seen: list[bool] = []
    build = selection_module._build

    def watched(*args, **kwargs):
        records = build(*args, **kwargs)
        for record in records:
            weakref.finalize(record, lambda: seen.append(not gc.isenabled()))
        return records

    monkeypatch.setattr(selection_module, "_build", watched)
    return seen


@pytest.mark.parametrize("scorer", ["token-check", "embedding"])
def test_explain_and_score_free_records_inside_the_pause(store_path, freed_paused, scorer) -> None:
    from wide_store import wide_store

    wide_store(store_path, n_features=4500, n_sequences=64, chunk=1000)  # 3 pages of 2,048; 450 dead
    settings = EngineSettings(progress=False)
    if scorer == "embedding":
        # loaded first: the model's first load leaves the frames that called it in an
        # import's traceback cycle, which would hold the first page's records
        embed(["warm up"], str(default_model_path()))
    with featurelens.open_store(store_path) as store:
        stats = explain_features(store, ExplainSpec("offline:none", "token-lookup"), settings=settings)
        assert (stats.succeeded, stats.failed, stats.never_fired) == (4050, 0, 450)
        assert freed_paused == [True] * 4050
        freed_paused.clear()
        stats = score_features(store, ScoreSpec("offline:none", scorer), settings=settings)
        assert (stats.succeeded, stats.failed) == (4050, 0)
        assert store.execute("SELECT count(*) FROM scores WHERE status = 'ok'")[0][0] > 0
    assert freed_paused == [True] * 4050
