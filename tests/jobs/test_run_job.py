"""featurelens run: stage orchestration, resume, the runs row and the closing summary,
on a real store (stages here write synthetic rows; the real stages are exercised by
the slow end-to-end test in test_run_end_to_end.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.jobs.run.job import (
    RunContext,
    RunOptions,
    StageResult,
    format_summary,
    run_pipeline,
    summarize,
    workdir_for,
)

OPTIONS = RunOptions(label_features=5)


def _fill(ctx: RunContext) -> StageResult:
    have = ctx.store.execute("SELECT count(*) FROM features WHERE dictionary_id = ?",
                             [ctx.options.dictionary_id])[0][0]
    if have:
        return StageResult("fill", "skipped", "already there")
    fill_store(ctx.store, n_features=20, dictionary_id=ctx.options.dictionary_id)
    return StageResult("fill", "done", "20 features")


def test_stages_run_in_order_then_the_summary_shows_the_best(store_path: Path) -> None:
    lines: list[str] = []
    order: list[str] = []

    def second(ctx: RunContext) -> StageResult:
        order.append("second")
        assert ctx.workdir == workdir_for(store_path) and ctx.workdir.is_dir()
        return StageResult("second", "done", "ok")

    report = run_pipeline(store_path, OPTIONS, [("fill", lambda c: (order.append("fill"), _fill(c))[1]),
                                                ("second", second)], echo=lines.append)
    assert order == ["fill", "second"] and report.complete
    assert lines[0] == "[1/2] fill" and lines[2] == "[2/2] second" and "done: 20 features" in lines[1]
    summary = summarize(store_path, report.dictionary_id)
    with featurelens.open_store(store_path, read_only=True) as store:
        best = store.sql("SELECT feature, score FROM scores WHERE status = 'ok' "
                         "ORDER BY score DESC, feature LIMIT 5").to_dicts()
        run = store.sql("SELECT kind, status, progress FROM runs WHERE kind = 'run'").to_dicts()
    assert [(b["feature"], b["score"]) for b in summary.best] == [(b["feature"], b["score"]) for b in best]
    assert summary.n_features == 20 and summary.n_alive == 19 and summary.n_scored == 20
    assert run == [{"kind": "run", "status": "done", "progress": '{"fill": "done", "second": "done"}'}]
    text = format_summary(summary, OPTIONS)
    assert str(store_path.resolve()) in text
    assert f"featurelens serve --store {store_path}" in text
    assert "openai:gpt-4o-mini" in text and "--label-features" in text
    first_best = text.split("Best-scored features")[1].splitlines()[1]
    assert first_best.strip().startswith(f"#{best[0]['feature']}")


def test_an_interrupted_run_is_marked_failed_and_a_rerun_resumes(store_path: Path) -> None:
    calls: list[str] = []

    def flaky(ctx: RunContext) -> StageResult:
        calls.append("flaky")
        if len(calls) == 1:
            raise KeyboardInterrupt
        return StageResult("flaky", "done", "finished")

    stages = [("fill", _fill), ("flaky", flaky)]
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(store_path, OPTIONS, stages, echo=lambda _: None)
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT status FROM runs WHERE kind = 'run'") == [("failed",)]
    lines: list[str] = []
    report = run_pipeline(store_path, OPTIONS, stages, echo=lines.append)
    assert report.complete and calls == ["flaky", "flaky"]
    assert "skipped: already there" in lines[1]  # the fill stage found its rows
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*), min(status) FROM runs WHERE kind = 'run'") == [(1, "done")]
        assert store.execute("SELECT count(*) FROM features")[0][0] == 20


def test_dictionary_id_is_stable_and_follows_the_training_options() -> None:
    assert RunOptions().dictionary_id == RunOptions(label_features=99, llm="openai:x").dictionary_id
    assert RunOptions().dictionary_id != RunOptions(train_tokens=1234).dictionary_id
    assert RunOptions().dictionary_id.startswith("smollm2-l6-topk4x-")


def test_summary_without_scores_says_so(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        fill_store(store, n_features=5, dictionary_id="d")
        store.execute("DELETE FROM scores")
    text = format_summary(summarize(store_path, "d"), OPTIONS)
    assert "No feature has a score yet." in text and "5 features (4 fired), 4 explained, 0 scored" in text


def test_the_embed_stage_fills_search_then_skips_and_none_leaves_it(store_path: Path) -> None:
    """run's last stage embeds every explanation with the installed sentence model, so
    featurelens search finds features by meaning at once; a rerun embeds nothing;
    --embeddings none leaves it to search's first query; an unknown scheme is refused
    before any stage runs."""
    from featurelens.core.errors import FeaturelensError
    from featurelens.core.store import explanation_search
    from featurelens.jobs.run.stages import stage_embed

    stages = [("fill", _fill), ("embed", stage_embed)]
    none = run_pipeline(store_path, RunOptions(label_features=5, embeddings="none"), stages, echo=lambda _: None)
    assert none.stages[-1].status == "skipped" and "--embeddings none" in none.stages[-1].detail
    with featurelens.open_store(store_path, read_only=True) as store:
        explained = store.execute("SELECT count(*) FROM explanations")[0][0]
        assert explained > 0 and store.execute("SELECT count(*) FROM explanation_embeddings")[0][0] == 0
    report = run_pipeline(store_path, OPTIONS, stages, echo=lambda _: None)
    assert report.complete and report.stages[-1].status == "done"
    assert report.stages[-1].detail.startswith(f"{explained} explanations embedded with all-MiniLM-L6-v2")
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanation_embeddings")[0][0] == explained
        text = store.execute("SELECT text FROM explanations ORDER BY explanation_id LIMIT 1")[0][0]
        found = explanation_search.search(store.execute, text, limit=1)
    assert found[0]["text"] == text and found[0]["similarity"] > 0.99
    again = run_pipeline(store_path, OPTIONS, stages, echo=lambda _: None)
    assert again.stages[-1].status == "skipped" and "embedded already" in again.stages[-1].detail
    ran: list[str] = []
    with pytest.raises(FeaturelensError, match="Unknown --embeddings 'openai'; featurelens search reads local, none"):
        run_pipeline(store_path, RunOptions(embeddings="openai"), [("x", lambda ctx: ran.append("x"))],
                     echo=lambda _: None)
    assert ran == []
