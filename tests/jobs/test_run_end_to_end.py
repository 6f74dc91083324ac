"""featurelens run for real: model, training, extraction, explanation and simulation
scoring through the other areas' public functions, then a rerun that resumes.

The fast test uses the tiny random Llama as both the model and the local LLM (its
explanations are noise; what is tested is the wiring, the store and the resume). The
slow test runs the embedded SmolLM2 with small sizes, as `make run` does with larger ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import featurelens


def _counts(path: Path) -> dict[str, int]:
    with featurelens.open_store(path, read_only=True) as store:
        return {t: store.execute(f"SELECT count(*) FROM {t}")[0][0]
                for t in ("dictionaries", "features", "examples", "sequences", "explanations", "scores",
                          "llm_calls", "failures")}


def _run(cli, store: Path, *extra: str):
    result = cli("run", "--store", store, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_on_a_tiny_model_then_rerun_resumes(cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    from featurelens.testing import SAMPLE_TEXT

    store = tmp_path / "run.duckdb"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SAMPLE_TEXT * 40), encoding="utf-8")
    args = ("--model", str(tiny_model_dir), "--llm", f"local:{tiny_model_dir}", "--corpus", str(corpus),
            "--layer", "1", "--expansion", "2", "--k", "4", "--train-tokens", "2048",
            "--extract-tokens", "512", "--label-features", "2",
            "--split", "all")  # one document: it cannot be split into train and held-out
    output = _run(cli, store, *args)
    for stage in ("[1/8]", "[2/8]", "[3/8]", "[4/8]", "[5/8]", "[6/8]", "[7/8]", "[8/8]"):
        assert stage in output
    assert f"Store: {store.resolve()}" in output and "featurelens serve --store" in output
    first = _counts(store)
    assert first["dictionaries"] == 1 and first["features"] == 64 and first["examples"] > 0
    assert first["explanations"] + first["failures"] >= 1  # every attempt is either stored or explained
    with featurelens.open_store(store, read_only=True) as db:  # search by meaning is ready: all embedded
        assert db.execute("SELECT count(*) FROM explanation_embeddings")[0][0] == first["explanations"]
    with featurelens.open_store(store, read_only=True) as db:
        runs = db.sql("SELECT kind, status FROM runs WHERE kind = 'run'").to_dicts()
    assert runs == [{"kind": "run", "status": "done"}]
    with featurelens.open_store(store, read_only=True) as db:
        unreadable = db.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL "
                                "AND reason LIKE 'unusable answer%'")[0][0]
    again = _run(cli, store, *args)
    assert len(re.findall(r"skipped", again)) >= 2  # training and extraction found their results
    second = _counts(store)
    # nothing duplicated, nothing redone, except that unreadable answers are asked again
    # (they are not served from the cache); their failure rows are kept, one per feature
    assert {**second, "llm_calls": 0} == {**first, "llm_calls": 0}
    assert second["llm_calls"] - first["llm_calls"] == unreadable


@pytest.mark.slow
def test_run_on_the_embedded_model_with_small_sizes(cli, tmp_path: Path) -> None:
    store = tmp_path / "run.duckdb"
    args = ("--train-tokens", "16384", "--extract-tokens", "4096", "--label-features", "3")
    output = _run(cli, store, *args)
    counts = _counts(store)
    assert counts["features"] == 576 * 4 and counts["explanations"] >= 1
    assert "Best-scored features" in output or "No feature has a score yet." in output
    with featurelens.open_store(store, read_only=True) as db:
        unreadable = db.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL "
                                "AND reason LIKE 'unusable answer%'")[0][0]
    again = _run(cli, store, *args)
    second = _counts(store)  # unreadable answers are asked again, nothing else is redone
    assert {**second, "llm_calls": 0} == {**counts, "llm_calls": 0} and again.count("skipped") >= 4
    assert second["llm_calls"] >= counts["llm_calls"] and (unreadable or second == counts)
