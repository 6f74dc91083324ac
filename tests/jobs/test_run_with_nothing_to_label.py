"""featurelens run on corpora and stores with nothing to label: it finishes (or stops
before writing) with a sentence saying what happened and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

import featurelens
from featurelens.jobs.run.context import RunContext, RunOptions
from featurelens.jobs.run.job import format_summary, summarize
from featurelens.jobs.run.labels import stage_lookup, stage_offline_scores
from featurelens.testing.planted_features import planted_records, write_planted_store

OPTIONS = RunOptions(label_features=0, embedding_features=0, offline_windows=8, extract_tokens=4096)


def _args(model: Path, corpus: Path) -> list[str]:
    return ["--model", str(model), "--llm", f"local:{model}", "--corpus", str(corpus), "--layer", "1",
            "--expansion", "2", "--k", "4", "--train-tokens", "2048", "--extract-tokens", "512",
            "--label-features", "0", "--embedding-features", "0", "--split", "all"]


@pytest.mark.parametrize("text", ["", "   \n\n \t \n"])
def test_an_empty_corpus_is_one_sentence(cli, tiny_model_dir: Path, tmp_path: Path, text: str) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    result = cli("run", "--store", tmp_path / "s.duckdb", *_args(tiny_model_dir, corpus))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: The corpus holds no text to tokenize (its documents are empty or whitespace); "
        "point --corpus at files with text.")


def test_no_feature_fired_says_so(store_path: Path, tmp_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=12, n_quantile=8, n_random=8))
        store.execute("UPDATE features SET fire_count = 0, density = 0")
        ctx = RunContext(store, OPTIONS, tmp_path, echo=lambda _: None)
        ctx.values["dictionary_id"] = "planted"
        label = stage_lookup(ctx)
        assert label.status == "done" and label.detail.startswith("No feature fired on the 4,096 extracted tokens")
        assert stage_offline_scores(ctx).detail == "nothing to score"
    text = format_summary(summarize(store_path, "planted"), OPTIONS)
    assert "3 features (0 fired)" in text and "rerun with more --extract-tokens" in text
    assert "No feature has a score yet." not in text


def test_a_corpus_of_one_repeated_token_finishes_and_says_why_nothing_ranks(cli, tiny_model_dir: Path,
                                                                            tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" a" * 20_000)
    store = tmp_path / "s.duckdb"
    result = cli("run", "--store", store, *_args(tiny_model_dir, corpus))
    assert result.exit_code == 0, result.output[-2000:]
    assert "No label has a defined score: all" in result.output and "give --corpus more varied text" in result.output
    with featurelens.open_store(store, read_only=True) as db:
        labels = db.sql("SELECT text FROM explanations WHERE explainer = 'token-lookup'")["text"].to_list()
        statuses = set(db.sql("SELECT status FROM scores")["status"].to_list())
    assert labels and all(t.startswith('" a"') for t in labels) and statuses == {"undefined"}
