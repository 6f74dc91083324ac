"""Provider batch APIs: submit, status, collect, resume, through the real SDKs on HTTP fakes."""

from __future__ import annotations

import json

import httpx2
import pytest
from llm_fixtures import chat_json, fill, message_json, use_test_explainer

import featurelens
from featurelens.jobs.batch_collection import collect_batches
from featurelens.labelers import explain
from featurelens.labelers.explain import ExplainSpec
from featurelens.llm import providers as providers_pkg
from featurelens.llm.batch.clients import Limits
from featurelens.llm.providers.openai_provider import OpenAIBatches


class FakeBatchService:
    """OpenAI Files + Batches and Anthropic Message Batches, in one MockTransport handler."""

    def __init__(self, polls_before_done: int = 1, fail_feature: int | None = 2):
        self.uploaded: dict[str, list[dict]] = {}
        self.batches: dict[str, dict] = {}
        self.polls_before_done = polls_before_done
        self.fail_feature = fail_feature
        self.calls: list[str] = []

    def client(self):
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))

    def _answer_ok(self, line_or_params: dict) -> bool:
        messages = line_or_params.get("messages", [])
        last = messages[-1]["content"] if messages else ""
        text = last if isinstance(last, str) else last[0]["text"]
        return self.fail_feature is None or f"feature {self.fail_feature}:" not in text

    def handle(self, request):
        path, method = request.url.path, request.method
        self.calls.append(f"{method} {path}")
        # -- OpenAI -------------------------------------------------------------------
        if method == "POST" and path == "/v1/files":
            file_id = f"file-in-{len(self.uploaded)}"
            body = request.read().decode()
            self.uploaded[file_id] = [json.loads(l) for l in body.splitlines() if l.startswith('{"custom_id"')]
            return httpx2.Response(200, json={"id": file_id, "object": "file", "bytes": len(body),
                                              "created_at": 1, "filename": "b.jsonl",
                                              "purpose": "batch", "status": "processed"})
        if method == "POST" and path == "/v1/batches":
            sent = json.loads(request.read())
            batch_id = f"batch_{len(self.batches)}"
            self.batches[batch_id] = {"input": sent["input_file_id"], "polls": 0, "kind": "openai"}
            return httpx2.Response(200, json=self._openai_batch(batch_id))
        if method == "GET" and path.startswith("/v1/batches/"):
            batch_id = path.rsplit("/", 1)[1]
            self.batches[batch_id]["polls"] += 1
            return httpx2.Response(200, json=self._openai_batch(batch_id))
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            batch_id = path.split("/")[3].removeprefix("file-out-")
            lines = []
            for line in self.uploaded[self.batches[batch_id]["input"]]:
                if self._answer_ok(line["body"]):
                    response = {"status_code": 200, "request_id": "r",
                                "body": chat_json("LABEL: from the batch", 80, 4)}
                    lines.append({"id": "x", "custom_id": line["custom_id"], "response": response,
                                  "error": None})
                else:
                    lines.append({"id": "x", "custom_id": line["custom_id"], "error": None,
                                  "response": {"status_code": 400, "request_id": "r",
                                               "body": {"error": {"message": "context too long"}}}})
            return httpx2.Response(200, content="\n".join(json.dumps(l) for l in lines).encode())
        # -- Anthropic ----------------------------------------------------------------
        if method == "POST" and path == "/v1/messages/batches":
            batch_id = f"msgbatch_{len(self.batches)}"
            self.batches[batch_id] = {"requests": json.loads(request.read())["requests"],
                                      "polls": 0, "kind": "anthropic"}
            return httpx2.Response(200, json=self._anthropic_batch(batch_id))
        if method == "GET" and path.endswith("/results"):
            batch_id = path.split("/")[-2]
            lines = []
            for item in self.batches[batch_id]["requests"]:
                if self._answer_ok(item["params"]):
                    result = {"type": "succeeded", "message": message_json("LABEL: from claude", 40, 900)}
                else:
                    result = {"type": "errored", "error": {"type": "error", "error": {
                        "type": "invalid_request_error", "message": "prompt is too long"}}}
                lines.append({"custom_id": item["custom_id"], "result": result})
            return httpx2.Response(200, content="\n".join(json.dumps(l) for l in lines).encode(),
                                   headers={"content-type": "application/binary"})
        if method == "GET" and path.startswith("/v1/messages/batches/"):
            batch_id = path.rsplit("/", 1)[1]
            self.batches[batch_id]["polls"] += 1
            return httpx2.Response(200, json=self._anthropic_batch(batch_id))
        return httpx2.Response(404, json={"error": {"message": f"no route {method} {path}"}})

    def _done(self, batch_id: str) -> bool:
        return self.batches[batch_id]["polls"] > self.polls_before_done

    def _openai_batch(self, batch_id: str) -> dict:
        done = self._done(batch_id)
        n = len(self.uploaded[self.batches[batch_id]["input"]])
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
                "input_file_id": self.batches[batch_id]["input"], "completion_window": "24h",
                "status": "completed" if done else "in_progress", "created_at": 1,
                "output_file_id": f"file-out-{batch_id}" if done else None, "error_file_id": None,
                "request_counts": {"total": n, "completed": n if done else 0, "failed": 0}}

    def _anthropic_batch(self, batch_id: str) -> dict:
        done = self._done(batch_id)
        n = len(self.batches[batch_id]["requests"])
        return {"id": batch_id, "type": "message_batch",
                "processing_status": "ended" if done else "in_progress",
                "request_counts": {"processing": 0 if done else n, "succeeded": n if done else 0,
                                   "errored": 0, "canceled": 0, "expired": 0},
                "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
                "ended_at": "2026-01-01T01:00:00Z" if done else None, "archived_at": None,
                "cancel_initiated_at": None,
                "results_url": f"https://api.anthropic.com/v1/messages/batches/{batch_id}/results"
                if done else None}


@pytest.fixture
def service(monkeypatch, store):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    use_test_explainer(monkeypatch)
    fill(store, 5)
    fake = FakeBatchService()
    original = providers_pkg.build_provider

    def build(spec, **options):
        return original(spec, http_client=fake.client(), **options)

    monkeypatch.setattr(providers_pkg, "build_provider", build)
    return fake


@pytest.mark.parametrize("llm", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
def test_batch_lifecycle_submit_status_collect(store, service, llm):
    spec = ExplainSpec(llm, "echo")
    submission = explain.submit_explain(store, spec)
    assert (submission.requests, len(submission.batch_ids), submission.features) == (5, 1, 5)
    row = store.execute("SELECT provider, status, request_count, CAST(requests AS VARCHAR), run_id "
                        "FROM batches")[0]
    assert row[:3] == (llm.split(":")[0], "submitted", 5)
    assert sorted(f for _, f, _ in json.loads(row[3]).values()) == [0, 1, 2, 3, 4]
    # submitting again sends nothing: every request is already waiting in a batch
    again = explain.submit_explain(store, spec)
    assert (again.requests, again.already_submitted, again.batch_ids) == (0, 5, [])

    first = collect_batches(store, progress=False)  # still in progress
    assert "not finished yet" in first[0]
    assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0

    second = collect_batches(store, progress=False)
    assert "collected 4 answers, 1 errors" in second[0]
    assert "wrote 4 results" in second[-1] and "1 failed" in second[-1]
    assert store.execute("SELECT count(*) FROM explanations")[0][0] == 4
    assert store.execute("SELECT status FROM batches")[0][0] == "collected"
    assert store.execute("SELECT status FROM runs")[0][0] == "done"
    failed_feature, reason = store.execute("SELECT feature, reason FROM failures")[0]
    assert failed_feature == 2 and "batch answered with an error" in reason and "too long" in reason
    calls = store.execute("SELECT count(*), sum(cost_usd) > 0, count(batch_id) FROM llm_calls "
                          "WHERE batch_id IS NOT NULL AND status = 'ok'")[0]
    assert calls == (4, True, 4)
    errors = store.execute("SELECT error FROM llm_calls WHERE status = 'error' AND batch_id IS NOT NULL")
    assert len(errors) == 1 and ("too long" in errors[0][0])
    # collecting again adds nothing twice
    assert collect_batches(store, progress=False) == []
    assert store.execute("SELECT count(*) FROM llm_calls WHERE batch_id IS NOT NULL")[0][0] == 5


def test_batch_cost_uses_the_batch_discount(store, service):
    explain.submit_explain(store, ExplainSpec("openai:gpt-4o-mini", "echo"))
    service.polls_before_done = 0
    collect_batches(store, progress=False)
    cost = store.execute("SELECT cost_usd FROM llm_calls WHERE batch_id IS NOT NULL AND status = 'ok' LIMIT 1")[0][0]
    assert cost == pytest.approx(0.5 * (80 * 0.15 + 4 * 0.60) / 1e6)


def test_requests_are_split_to_the_provider_limits(store, service, monkeypatch):
    monkeypatch.setattr(OpenAIBatches, "limits", Limits(2, 10**9))
    submission = explain.submit_explain(store, ExplainSpec("openai:gpt-4o-mini", "echo"))
    assert len(submission.batch_ids) == 3
    assert store.execute("SELECT list(request_count ORDER BY batch_id) FROM batches")[0][0] == [2, 2, 1]
    service.polls_before_done = 0
    lines = collect_batches(store, progress=False)
    assert sum("collected" in line for line in lines) == 3
    assert store.execute("SELECT count(*) FROM explanations")[0][0] == 4  # feature 2 errored


def test_status_and_collect_from_the_cli_in_a_later_process(store_path, service, cli):
    with featurelens.open_store(store_path) as store:
        explain.submit_explain(store, ExplainSpec("openai:gpt-4o-mini", "echo"))
    status = cli("batches", "status", "--store", store_path)
    assert status.exit_code == 0 and "status=in_progress" in status.output
    collected = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert collected.exit_code == 0, collected.output
    assert "collected 4 answers" in collected.output


def test_providers_without_a_batch_api_are_refused(monkeypatch, store_path, tiny_model_dir, cli):
    use_test_explainer(monkeypatch)
    with featurelens.open_store(store_path) as store:
        fill(store, 3)
    result = cli("explain", "--llm", f"local:{tiny_model_dir}", "--explainer", "echo",
                 "--batch-api", "--store", store_path)
    assert result.exit_code == 1
    assert "has no batch API; drop --batch-api" in result.output
    with featurelens.open_store(store_path) as store:
        assert store.execute("SELECT count(*) FROM runs")[0][0] == 0


def test_batch_commands_do_not_create_a_store(cli, tmp_path):
    missing = tmp_path / "typo.duckdb"
    for command in ("status", "collect"):
        result = cli("batches", command, "--store", missing)
        assert result.exit_code == 1 and "There is no feature store at" in result.output
    assert not missing.exists()


def test_status_of_a_store_without_batches(cli, store_path):
    featurelens.open_store(store_path).close()
    result = cli("batches", "status", "--store", store_path)
    assert result.exit_code == 0 and "No provider batches in this store." in result.output


def test_status_shows_each_batchs_progress_and_the_total(store_path, service, cli, monkeypatch):
    monkeypatch.setattr(OpenAIBatches, "limits", Limits(2, 10**9))
    with featurelens.open_store(store_path) as store:
        explain.submit_explain(store, ExplainSpec("openai:gpt-4o-mini", "echo"))
    status = cli("batches", "status", "--store", store_path)
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert sum("progress=0/2 done, 0 failed" in line for line in lines) == 2
    assert sum("progress=0/1 done, 0 failed" in line for line in lines) == 1
    assert lines[-1] == "3 batches, 5 requests; 0 collected (0%)."
    service.polls_before_done = 0
    assert cli("batches", "collect", "--no-progress", "--store", store_path).exit_code == 0
    shown = cli("batches", "status", "--store", store_path)
    after = shown.output.splitlines()
    assert sum("progress=2/2 answers stored" in line for line in after) == 2, shown.output
    assert after[-1] == "3 batches, 5 requests; 5 collected (100%)."


def test_requests_are_split_by_bytes_too(store, service, monkeypatch):
    line = len(json.dumps({"custom_id": "k" * 64, "method": "POST", "url": "/v1/chat/completions"}))
    monkeypatch.setattr(OpenAIBatches, "limits", Limits(10**6, line))  # a byte cap under one request: each alone
    submission = explain.submit_explain(store, ExplainSpec("openai:gpt-4o-mini", "echo"))
    assert len(submission.batch_ids) == 5
    assert store.execute("SELECT list(request_count ORDER BY batch_id) FROM batches")[0][0] == [1] * 5
