"""The intervention scorer on planted output features of a tiny random Llama, judged by a
faithful fake LLM: right explanations must beat wrong ones (AUROC), and through the CLI
accuracy and strength are stored and unreadable answers counted as failures."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import polars as pl
import pytest

import featurelens
from featurelens.core.host import manager as plugins
from featurelens.core.host.protocols import Example, FeatureRecord, LLMResponse
from featurelens.scorers.intervention import InterventionScorer, parse_choices
from featurelens.testing.intervention_planted import (
    SteeringJudge,
    planted_output_dictionary,
    separation,
    sharpen_saved_model,
)
from featurelens.testing.planted_features import write_planted_store

N_FEATURES = 3


@pytest.fixture(scope="module")
def planted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(model folder, dictionary path, hookpoint, words): a steerable copy of the tiny model."""
    from featurelens.core.host.manager import create

    folder = tmp_path_factory.mktemp("steerable")
    model_dir = folder / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    sharpen_saved_model(model_dir)
    backend = create("model_backend", "hf", str(model_dir), dtype="float32", device="cpu")
    path, hookpoint, words = planted_output_dictionary(backend, folder / "dictionary", N_FEATURES)
    return model_dir, path, hookpoint, words, backend


def _scorer(planted, **options) -> InterventionScorer:
    model_dir, path, hookpoint, _, backend = planted
    scorer = InterventionScorer(dictionary=str(path), hookpoint=hookpoint, model=str(model_dir),
                                device="cpu", **options)
    from featurelens.interventions.targets import load_target

    scorer._targets[str(path)] = load_target(str(path), hookpoint=hookpoint, backend=backend)
    return scorer


def test_right_explanations_beat_wrong_ones(planted, one_thread, capsys) -> None:
    words = planted[3]
    scorer = _scorer(planted, n_prompts=8, max_tokens=12)
    records = [FeatureRecord("planted", i, 1.0, 0.1, []) for i in range(N_FEATURES)]
    result = separation(scorer, records, words)
    with capsys.disabled():
        print(f"\nintervention scorer, planted features: AUROC {result['auroc']:.3f}, mean accuracy "
              f"right {result['mean_right']:.2f} vs wrong {result['mean_wrong']:.2f}")
    assert result["auroc"] >= 0.9
    assert result["mean_right"] >= 0.8 > result["mean_wrong"]
    pairs = scorer.pairs(records[0])
    assert pairs["kl"] == pytest.approx(scorer.kl, rel=0.05)  # strength set for the target KL
    again = _scorer(planted, n_prompts=8, max_tokens=12).pairs(records[0])
    assert again["pairs"] == pairs["pairs"] and again["strength"] == pairs["strength"]  # deterministic


def test_answers_are_read_strictly() -> None:
    assert parse_choices("Sure: [1, 2, 2]", 3) == [1, 2, 2]
    for answer, expected in (("[1, 2]", 3), ("no list", 1), ("[1, 3]", 2)):
        with pytest.raises(ValueError):
            parse_choices(answer, expected)
    with pytest.raises(featurelens.core.errors.FeaturelensError, match="-o dictionary"):
        InterventionScorer(hookpoint="blocks.0.hook_resid_post")


@pytest.fixture
def judge_host(monkeypatch):
    module = types.ModuleType("featurelens_judge")
    module.featurelens_api = 1

    @featurelens.hookimpl
    def register_llm_providers(register):
        register("judge", lambda model, **_: SteeringJudge(model), description="faithful judge (tests)")

    module.register_llm_providers = register_llm_providers
    monkeypatch.setattr(plugins, "_HOST", plugins.build_host([("featurelens-judge", module)]))


def _store(path: Path, words: list[str]) -> Path:
    records = [FeatureRecord("planted", i, 1.0, 0.1, [Example([" a", " b"], [1.0, 0.0], "top")])
               for i in range(N_FEATURES)]
    with featurelens.open_store(path) as store:
        write_planted_store(store, records)
        rows = [{"explanation_id": f"{i}-{kind}", "dictionary_id": "planted", "feature": i,
                 "explainer": "manual", "llm": "human:test",
                 "text": f"the word '{words[i if kind == 'right' else (i + 1) % N_FEATURES]}'"}
                for i in range(N_FEATURES) for kind in ("right", "wrong")]
        store.insert("explanations", pl.DataFrame(rows))
    return path


def _options(planted, prompts: int, tokens: int) -> list[str]:
    model_dir, path, hookpoint = planted[:3]
    out = []
    for key, value in (("dictionary", path), ("hookpoint", hookpoint), ("model", model_dir),
                       ("n_prompts", prompts), ("max_tokens", tokens), ("device", "cpu")):
        out += ["--option", f"{key}={value}"]
    return out


def test_score_command_stores_accuracy_and_strength(cli, judge_host, planted, tmp_path, one_thread) -> None:
    store = _store(tmp_path / "s.duckdb", planted[3])
    result = cli("score", "--scorer", "intervention", "--llm", "judge:faithful", "--store", store,
                 "--no-progress", *_options(planted, 8, 12))
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store, read_only=True) as db:
        rows = db.sql("SELECT s.explanation_id, s.score, s.status, s.metrics FROM scores s "
                      "WHERE scorer = 'intervention' ORDER BY 1").to_dicts()
    assert len(rows) == 2 * N_FEATURES and all(r["status"] == "ok" for r in rows)
    right = [r["score"] for r in rows if r["explanation_id"].endswith("right")]
    wrong = [r["score"] for r in rows if r["explanation_id"].endswith("wrong")]
    assert sum(right) / len(right) >= 0.8 > sum(wrong) / len(wrong)
    import json
    metrics = json.loads(rows[0]["metrics"])
    assert metrics["strength"] > 0 and metrics["kl_reached"] == pytest.approx(1.0, rel=0.05)


def test_reads_dictionary_model_and_hookpoint_from_the_store(cli, judge_host, planted, tmp_path,
                                                            one_thread) -> None:
    """No -o dictionary/hookpoint/model: each feature's stored dictionary row says them."""
    model_dir, path, hookpoint = planted[:3]
    store = _store(tmp_path / "s.duckdb", planted[3])
    with featurelens.open_store(store) as db:
        db.execute("UPDATE dictionaries SET hookpoint = ?, source = ?", [hookpoint, str(path)])
        db.execute("UPDATE models SET source = ?", [str(model_dir)])
    result = cli("score", "--scorer", "intervention", "--llm", "judge:faithful", "--store", store,
                 "--no-progress", "--limit", 1, "--option", "n_prompts=4", "--option", "max_tokens=6",
                 "--option", "device=cpu")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store, read_only=True) as db:
        rows = db.sql("SELECT explanation_id, score, status FROM scores ORDER BY 1").to_dicts()
    assert [r["explanation_id"] for r in rows] == ["0-right", "0-wrong"]
    assert all(r["status"] == "ok" for r in rows) and rows[0]["score"] >= rows[1]["score"]
    # A dictionary the store cannot reload is one sentence naming the options.
    with featurelens.open_store(store) as db:
        db.execute("DELETE FROM dictionaries")
    scorer = InterventionScorer(device="cpu")
    with featurelens.open_store(store, read_only=True) as db:
        scorer.use_store(db)
    with pytest.raises(featurelens.core.errors.FeaturelensError, match="no dictionaries row for 'planted'"):
        scorer.target("planted")


def test_unreadable_answers_are_failures(cli, judge_host, planted, tmp_path, monkeypatch, one_thread) -> None:
    async def mumble(self, request):
        return LLMResponse(text="The second one, I think.")

    monkeypatch.setattr(SteeringJudge, "complete", mumble)
    store = _store(tmp_path / "s.duckdb", planted[3])
    result = cli("score", "--scorer", "intervention", "--llm", "judge:faithful", "--store", store,
                 "--no-progress", "--limit", 1, *_options(planted, 2, 3))
    assert result.exit_code == 4, result.output  # every answer unreadable: nothing succeeded
    with featurelens.open_store(store, read_only=True) as db:
        assert db.sql("SELECT count(*) FROM scores").item() == 0
        reasons = db.sql("SELECT reason FROM failures WHERE stage = 'score:intervention'")["reason"].to_list()
    assert len(reasons) == 2 and all("no [..] list" in r for r in reasons)
