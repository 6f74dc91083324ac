"""``featurelens score`` and ``featurelens label`` on the batch engine, against a real store.

The simulator is the faithful rule-based provider from :mod:`featurelens.testing.planted_features`
registered through the plugin hook like any third-party provider; one test drives the
real ``local`` provider with a tiny random Llama to check prompt log-prob alignment
on a real tokenizer.
"""

from __future__ import annotations

import json
import types

import pytest

import featurelens
from featurelens.core.host import manager as plugins
from featurelens.testing.planted_features import (
    PLANTED,
    RuleSimulator,
    planted_records,
    write_planted_store,
)

CAPS = {"prompt": frozenset({"prompt_logprobs"}), "output": frozenset({"output_logprobs"}),
        "json": frozenset()}


@pytest.fixture
def rule_host(monkeypatch):
    module = types.ModuleType("featurelens_rule_sim")
    module.featurelens_api = 1

    @featurelens.hookimpl
    def register_llm_providers(register):
        register("rule", lambda model, **_: RuleSimulator(model, CAPS[model]),
                 description="faithful keyword simulator (tests)")

    module.register_llm_providers = register_llm_providers
    monkeypatch.setattr(plugins, "_HOST", plugins.build_host([("featurelens-rule-sim", module)]))


@pytest.fixture
def planted_store(store_path):
    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=12, n_quantile=12, n_random=12))
        rows = []
        for feature, (name, (_, right)) in enumerate(PLANTED.items()):
            for text in (right, PLANTED[{"digits": "closing", "word": "digits", "closing": "word"}[name]][1]):
                rows.append({"explanation_id": f"{feature}-{text}", "dictionary_id": "planted",
                             "feature": feature, "explainer": "manual", "llm": "human:test", "text": text})
        import polars as pl
        store.insert("explanations", pl.DataFrame(rows))
    return store_path


def scores(path, scorer):
    with featurelens.open_store(path, read_only=True) as store:
        return store.sql(
            f"SELECT s.feature, e.text, s.score, s.status, s.n_parse_failures, s.metrics FROM scores s "
            f"JOIN explanations e USING (explanation_id) WHERE s.scorer = '{scorer}' ORDER BY 1, 2").to_dicts()


@pytest.mark.parametrize("mode", ["prompt", "output", "json"])
def test_score_right_high_wrong_low_and_rerun_resumes(cli, rule_host, planted_store, mode):
    result = cli("score", "--scorer", "simulation", "--llm", f"rule:{mode}", "--store", planted_store,
                 "--no-progress")
    assert result.exit_code == 0, result.output
    assert "scored (simulation) 6 features, 0 failed" in result.output
    rows = scores(planted_store, "simulation")
    right = {v[1] for v in PLANTED.values()}
    for row in rows:
        assert row["status"] == "ok" and row["n_parse_failures"] == 0
        if row["text"] in right and PLANTED[list(PLANTED)[row["feature"]]][1] == row["text"]:
            assert row["score"] > 0.8, row
        else:
            assert row["score"] < 0.3, row
    again = cli("score", "--scorer", "simulation", "--llm", f"rule:{mode}", "--store", planted_store,
                "--no-progress")
    assert "0 features" in again.output and "6 already done" in again.output
    assert len(scores(planted_store, "simulation")) == 6


def test_detection_and_fuzzing_through_the_cli_and_dry_run(cli, rule_host, planted_store):
    dry = cli("score", "--scorer", "detection", "--llm", "rule:json", "--store", planted_store, "--dry-run")
    assert dry.exit_code == 0 and "LLM calls:" in dry.output
    assert scores(planted_store, "detection") == []
    for scorer in ("detection", "fuzzing"):
        result = cli("score", "--scorer", scorer, "--llm", "rule:json", "--where", "feature < 2",
                     "--store", planted_store, "--no-progress")
        assert result.exit_code == 0, result.output
        rows = scores(planted_store, scorer)
        assert len(rows) == 4
        metrics = json.loads(rows[0]["metrics"])
        assert {"precision", "recall", "f1", "balanced_accuracy"} <= set(metrics)


def test_unreadable_answers_become_failures_not_scores(cli, rule_host, planted_store, monkeypatch):
    async def mumble(self, request):
        return featurelens.core.host.protocols.LLMResponse(text="Maybe [1, 0]?")

    monkeypatch.setattr(RuleSimulator, "complete", mumble)
    result = cli("score", "--scorer", "detection", "--llm", "rule:json", "--store", planted_store,
                 "--no-progress")
    assert result.exit_code == 4 and "0 features, 6 failed" in result.output  # nothing succeeded
    assert scores(planted_store, "detection") == []
    with featurelens.open_store(planted_store, read_only=True) as store:
        reasons = store.sql("SELECT reason FROM failures WHERE stage = 'score:detection'")["reason"].to_list()
    assert len(reasons) == 6 and all("lists 2 values for 5 examples" in r for r in reasons)


def test_bad_input_is_one_sentence_and_store_untouched(cli, rule_host, planted_store):
    bad = cli("score", "--scorer", "simulation", "--llm", "rule:json", "-o", "mode=psychic",
              "--store", planted_store)
    assert bad.exit_code == 1 and "mode 'psychic' is unknown" in bad.output
    unknown = cli("score", "--scorer", "vibes", "--llm", "rule:json", "--store", planted_store)
    assert unknown.exit_code == 1 and "No scorer is called 'vibes'" in unknown.output
    none = cli("score", "--llm", "rule:json", "--explainer", "nobody", "--store", planted_store)
    assert none.exit_code == 1 and "No explanations match" in none.output
    with featurelens.open_store(planted_store, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM runs")[0][0] == 0


def test_label_dry_run_plans_both_stages_and_spends_nothing(cli, rule_host, planted_store):
    result = cli("label", "--llm", "rule:prompt", "--scorer", "simulation", "--scorer", "fuzzing",
                 "--store", planted_store, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "explain stage:" in result.output and "score stage fuzzing" in result.output
    assert result.output.count("LLM calls:") == 3
    with featurelens.open_store(planted_store, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM llm_calls")[0][0] == 0
        assert store.execute("SELECT count(*) FROM runs")[0][0] == 0


def test_label_explains_then_scores(cli, rule_host, planted_store):
    result = cli("label", "--llm", "rule:prompt", "--explainer", "highlighted", "--scorer", "simulation",
                 "--scorer", "detection", "--store", planted_store, "--no-progress")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(planted_store, read_only=True) as store:
        got = store.sql("SELECT e.feature, e.text, s.scorer, s.score FROM explanations e JOIN scores s "
                        "USING (explanation_id) WHERE e.explainer = 'highlighted' ORDER BY 1, 3").to_dicts()
    assert [r["text"] for r in got[::2]] == [v[1] for v in PLANTED.values()]
    assert all(r["score"] > 0.8 for r in got)


def test_real_local_model_prompt_logprobs_line_up(cli, planted_store, tiny_model_dir):
    """A real tokenizer and forward pass: every window is read, none lost to misalignment."""
    result = cli("score", "--scorer", "simulation", "--llm", f"local:{tiny_model_dir}", "--where",
                 "feature = 0", "-o", "n_activating=4", "-o", "n_random=4", "--store", planted_store,
                 "--no-progress")
    assert result.exit_code == 0, result.output
    rows = scores(planted_store, "simulation")
    assert len(rows) == 2 and all(r["n_parse_failures"] == 0 for r in rows)
    metrics = json.loads(rows[0]["metrics"])
    assert metrics["mode"] == "prompt-logprobs" and metrics["n_windows_scored"] == 8


@pytest.mark.slow
def test_label_with_the_embedded_smollm2(cli, store_path):
    """The whole offline path on the real embedded model: explain, then simulate all at once."""
    with featurelens.open_store(store_path) as store:
        write_planted_store(store, planted_records(n_top=4, n_quantile=4, n_random=4))
    result = cli("label", "--llm", "local:smollm2", "--where", "feature = 0", "-o", "n_examples=4",
                 "-s", "n_activating=4", "-s", "n_random=4", "--store", store_path, "--no-progress")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        explained = store.sql("SELECT text FROM explanations").to_dicts()
        failed = store.sql("SELECT reason FROM failures").to_dicts()
        scored = store.sql("SELECT status, n_parse_failures, metrics FROM scores").to_dicts()
    print(explained, failed, scored)
    assert len(explained) + len(failed) >= 1  # an explanation, or a recorded reason why not
    if explained:
        assert 0 < len(explained[0]["text"]) <= 200
        assert len(scored) == 1 and scored[0]["status"] in ("ok", "undefined")
        assert scored[0]["n_parse_failures"] == 0


def test_crash_mid_run_then_rerun_loses_and_duplicates_nothing(planted_store):
    """A key revoked half-way stops the run; the rerun scores only what is missing, from the cache where it can."""
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import ScoreSpec, score_features

    class Revoked(Exception):
        status_code = 401

    class FlakyKey(RuleSimulator):
        async def complete(self, request):
            if self.calls >= 5:
                raise Revoked("key revoked")
            return self.answer(request)

    spec = ScoreSpec("rule:json", "detection", (("n_activating", 5), ("n_random", 5)))
    settings = EngineSettings(concurrency=1, flush_rows=1, progress=False)
    with featurelens.open_store(planted_store) as store:
        with pytest.raises(featurelens.core.errors.FeaturelensError, match="refused the credentials"):
            score_features(store, spec, provider=FlakyKey("json", CAPS["json"]), settings=settings)
        partial = store.execute("SELECT count(*) FROM scores")[0][0]
        assert 0 < partial < 6
        assert store.execute("SELECT status FROM runs")[0][0] == "failed"
        healthy = RuleSimulator("json", CAPS["json"])
        stats = score_features(store, spec, provider=healthy, settings=settings)
        assert stats.skipped == partial and stats.succeeded == 6 - partial
        assert store.execute("SELECT count(*), count(DISTINCT explanation_id) FROM scores")[0] == (6, 6)
        assert healthy.calls < 6 * 2  # answers paid for before the crash came from the cache
        assert store.execute("SELECT status FROM runs")[0][0] == "done"
