"""``label --batch-api``: explanation batches, then scoring batches, chained by ``batches collect``;
and the batch API chosen by job size."""

from __future__ import annotations

import json

import httpx2
import pytest
from llm_fixtures import chat_json, fill, use_test_explainer

import featurelens
from featurelens.llm import providers as providers_pkg
from featurelens.llm.batch.choice import choose_batch
from tests.llm.test_batch_api import FakeBatchService


class ScoringBatchService(FakeBatchService):
    """Answers explanation lines with a label and detection lines with a 0/1 list of the right length."""

    def handle(self, request):
        response = super().handle(request)
        path = request.url.path
        if request.method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            sent = {line["custom_id"]: line["body"] for lines in self.uploaded.values() for line in lines}
            out = []
            for text in response.content.decode().splitlines():
                line = json.loads(text)
                body = sent[line["custom_id"]]
                if body["messages"][0]["content"].startswith("We study") and line["response"]["status_code"] == 200:
                    n = body["messages"][-1]["content"].count("</example")
                    line["response"]["body"] = chat_json("[" + ",".join("1" * n) + "]", 300, 2 * n)
                out.append(json.dumps(line))
            return httpx2.Response(200, content="\n".join(out).encode())
        return response


@pytest.fixture
def service(monkeypatch, store):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    use_test_explainer(monkeypatch)
    fill(store, 5)
    fake = ScoringBatchService(polls_before_done=0)
    original = providers_pkg.build_provider
    monkeypatch.setattr(providers_pkg, "build_provider",
                        lambda spec, **options: original(spec, http_client=fake.client(), **options))
    return fake


def test_label_batch_api_chains_explanation_then_scoring_across_collections(store_path, store, service, cli):
    store.close()
    submitted = cli("label", "--store", str(store_path), "--llm", "openai:gpt-4o-mini", "--explainer", "echo",
                    "--scorer", "detection", "-s", "adaptive=true", "-s", "round_windows=20", "-s", "ci_width=1.5", "--batch-api")
    assert submitted.exit_code == 0, submitted.output
    assert "submitted 5 requests for 5 features" in submitted.output
    assert "Scoring is submitted by the first featurelens batches collect" in submitted.output
    first = cli("batches", "collect", "--no-progress", "--store", str(store_path))
    assert first.exit_code == 0, first.output
    assert "collected 4 answers, 1 errors" in first.output  # feature 2's explanation is refused
    assert "detection: submitted the next round" in first.output and "collect again" in first.output
    with featurelens.open_store(store_path, read_only=True) as db:
        assert db.execute("SELECT count(*) FROM explanations")[0][0] == 4
        assert db.execute("SELECT count(*) FROM scores")[0][0] == 0
        purposes = db.execute("SELECT purpose, count(*) FROM batches GROUP BY purpose ORDER BY purpose")
        assert [p for p, _ in purposes] == ["explain", "score:detection"]
        label = db.execute("SELECT status FROM runs WHERE kind = 'label'")[0][0]
        assert label == "running"
        scoring_requests = db.execute("SELECT sum(request_count) FROM batches WHERE purpose = 'score:detection'")[0][0]
    second = cli("batches", "collect", "--no-progress", "--store", str(store_path))
    assert second.exit_code == 0, second.output
    assert "label run complete" in second.output
    with featurelens.open_store(store_path, read_only=True) as db:
        rows = db.execute("SELECT n_windows, ci_low, ci_high, status FROM scores ORDER BY feature")
        assert len(rows) == 4 and all(r[3] in ("ok", "undefined") for r in rows)
        assert all(r[0] is not None for r in rows)
        assert db.execute("SELECT status FROM runs WHERE kind = 'label'")[0][0] == "done"
        # every round was submitted once; the cache-only finish read them, nothing went live
        assert db.execute("SELECT count(*) FROM llm_calls WHERE batch_id IS NULL AND status = 'ok'")[0][0] == 0
        assert scoring_requests >= 4
    third = cli("batches", "collect", "--no-progress", "--store", str(store_path))
    assert third.exit_code == 0 and third.output.strip() == ""


def test_large_jobs_default_to_the_batch_api_and_small_ones_run_live():
    assert choose_batch(None, 20_000, 10_000, "openai:gpt-4o-mini")[0]
    use, note = choose_batch(None, 20_000, 10_000, "anthropic:claude-haiku-4-5")
    assert use and "--no-batch-api" in note and "20,000" in note
    assert choose_batch(None, 500, 10_000, "openai:gpt-4o-mini") == (False, None)
    assert choose_batch(False, 20_000, 10_000, "openai:gpt-4o-mini") == (False, None)
    assert choose_batch(True, 5, 10_000, "openai:gpt-4o-mini") == (True, None)
    assert choose_batch(None, 20_000, 10_000, "local:smollm2") == (False, None)
    assert choose_batch(None, 20_000, 10_000, "openai:served", {"base_url": "http://vllm:8000/v1"}) == (False, None)


def test_explain_above_the_threshold_submits_a_batch_and_says_why(store_path, store, service, cli):
    store.close()
    result = cli("explain", "--store", str(store_path), "--llm", "openai:gpt-4o-mini", "--explainer", "echo",
                 "--batch-threshold", "3")
    assert result.exit_code == 0, result.output
    assert "5 items >= --batch-threshold 3" in result.output and "submitted 5 requests" in result.output
    live = cli("explain", "--store", str(store_path), "--llm", "openai:gpt-4o-mini", "--explainer", "echo",
               "--batch-threshold", "3", "--no-batch-api", "--no-progress")
    # The fake serves only the batch routes, so the live calls fail: exit 4 (nothing succeeded),
    # which shows they were sent live rather than submitted.
    assert live.exit_code == 4, live.output
    assert "explained" in live.output and "batch-threshold" not in live.output


@pytest.fixture
def planted_service(monkeypatch, store):
    import polars as pl

    from featurelens.testing.planted_features import (
        PLANTED,
        planted_records,
        write_planted_store,
    )

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    write_planted_store(store, planted_records(seed=3))
    store.insert("explanations", pl.DataFrame([
        {"explanation_id": f"e{f}", "dictionary_id": "planted", "feature": f, "explainer": "manual",
         "llm": "human:test", "text": text} for f, (_, (_, text)) in enumerate(PLANTED.items())]))
    fake = ScoringBatchService(polls_before_done=0, fail_feature=None)
    original = providers_pkg.build_provider
    monkeypatch.setattr(providers_pkg, "build_provider",
                        lambda spec, **options: original(spec, http_client=fake.client(), **options))
    return fake


def test_adaptive_rounds_advance_one_batch_per_collection_and_stop_early(store_path, store, planted_service, cli):
    store.close()
    options = ["-o", "adaptive=true", "-o", "round_windows=20", "-o", "ci_width=0.12"]
    submitted = cli("score", "--store", str(store_path), "--llm", "openai:gpt-4o-mini", "--scorer", "detection",
                    *options, "--batch-api")
    assert submitted.exit_code == 0, submitted.output
    assert "submitted 12 requests for 3 features" in submitted.output  # first round: 20 windows, 5 a prompt
    # every answer says "fires": balanced accuracy 0.5, its interval narrows to < 0.12 at 60 windows
    outputs = [cli("batches", "collect", "--no-progress", "--store", str(store_path)).output for _ in range(3)]
    assert "detection: submitted the next round, 12 requests for 3 explanations" in outputs[0]
    assert "detection: submitted the next round" in outputs[1]
    assert "wrote 3 results" in outputs[2] and "submitted" not in outputs[2]
    with featurelens.open_store(store_path, read_only=True) as db:
        rows = db.execute("SELECT n_windows, score, ci_high - ci_low FROM scores")
        assert [r[0] for r in rows] == [60, 60, 60] and all(r[1] == 0.5 and r[2] < 0.12 for r in rows)
        sent = db.execute("SELECT sum(request_count) FROM batches")[0][0]
        assert sent == 3 * 12  # every round would have been 3 x 16 (80 windows)
        assert db.execute("SELECT status FROM runs WHERE kind = 'score'")[0][0] == "done"
        assert db.execute("SELECT count(*) FROM failures")[0][0] == 0
