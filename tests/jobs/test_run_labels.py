"""featurelens run's LLM-free stages: every fired feature labeled, every label scored,
the summary shows checkable labels, and a rerun resumes (on a real store, planted features)."""

from __future__ import annotations

from pathlib import Path

import featurelens
from featurelens.jobs.run.context import RunContext, RunOptions
from featurelens.jobs.run.job import format_summary, summarize
from featurelens.jobs.run.labels import stage_lookup, stage_offline_scores, top_example
from featurelens.testing.planted_features import planted_records, write_planted_store

OPTIONS = RunOptions(label_features=0, embedding_features=2, offline_windows=8, embedding_windows=4)


def _context(store, tmp_path: Path) -> RunContext:
    ctx = RunContext(store, OPTIONS, tmp_path, echo=lambda _: None)
    ctx.values["dictionary_id"] = "planted"
    return ctx


def test_lookup_and_offline_scores_then_a_checkable_summary(store_path: Path, tmp_path: Path):
    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=12, n_quantile=8, n_random=8))
        ctx = _context(store, tmp_path)
        first = stage_lookup(ctx)
        assert first.status == "done" and first.detail.startswith("3 labeled now")
        scored = stage_offline_scores(ctx)
        assert "token-check: 3 now" in scored.detail and "embedding: 2 now" in scored.detail
        rows = store.execute("SELECT scorer, count(*), min(score) FROM scores GROUP BY 1 ORDER BY 1")
        assert [(r[0], r[1]) for r in rows] == [("embedding", 2), ("token-check", 3)]
        assert rows[1][2] > 0.9  # planted tokens: the labels pick out the activating windows
        again = stage_lookup(ctx), stage_offline_scores(ctx)
        assert again[0].status == again[1].status == "skipped"
        assert "token-check: 0 now, 3 already" in again[1].detail
    text = format_summary(summarize(store_path, "planted"), OPTIONS)
    assert "3 explained, 5 scored" in text
    section = text.split("Best token-lookup labels")[1]
    assert '" cat" — 100% of top activation mass' in section
    assert "top example: " in section and "« cat»" in section
    assert "No feature has a score yet." not in text


def test_top_example_marks_the_peak_token(store):
    write_planted_store(store, planted_records(n_top=4, n_quantile=2, n_random=2))
    shown = top_example(store, "planted", 2, before=3, after=1)  # closing brackets
    marked = shown[shown.index("«") + 1:shown.index("»")]
    assert marked.strip(" .") in (")", "]", "}")
    assert top_example(store, "planted", 99) == ""
