"""``batches collect`` against a batch service that answers badly: unreadable or truncated
result files, answers for requests it was never sent, the same answer twice, expired and
failed batches, and a collect killed half-way. Every answer must reach the store once,
nothing the batch was not asked may enter the response cache, and no traceback."""

from __future__ import annotations

import json

import httpx2
import pytest
from llm_fixtures import chat_json, fill, use_test_explainer

import featurelens
from featurelens.jobs.batch_collection import collect_batches
from featurelens.labelers import explain
from featurelens.labelers.explain import ExplainSpec
from featurelens.llm import providers as providers_pkg
from tests.llm.test_batch_api import FakeBatchService

LLM = "openai:gpt-4o-mini"


class HostileBatchService(FakeBatchService):
    """The OpenAI side of the fake, with its result file and final status bent by ``mode``."""

    def __init__(self, mode: str):
        super().__init__(polls_before_done=0, fail_feature=None)
        self.mode = mode

    def _openai_batch(self, batch_id: str) -> dict:
        batch = super()._openai_batch(batch_id)
        if self.mode == "failed":  # the input file was refused: no output, no error file
            batch.update(status="failed", output_file_id=None, error_file_id=None,
                         errors={"object": "list", "data": [{"code": "invalid_json_line",
                                                            "message": "line 1 is not valid", "line": 1}]})
        elif self.mode == "expired":  # half answered in time, the rest in the error file
            batch.update(status="expired", error_file_id=f"file-err-{batch_id}")
        return batch

    def handle(self, request):
        path = request.url.path
        if request.method == "GET" and path.startswith("/v1/files/file-err-"):
            batch_id = path.split("/")[3].removeprefix("file-err-")
            lines = [{"id": "x", "custom_id": line["custom_id"], "response": None,
                      "error": {"code": "batch_expired", "message": "This request could not be executed "
                                "before the completion window expired."}}
                     for line in self.uploaded[self.batches[batch_id]["input"]][2:]]
            return httpx2.Response(200, content="\n".join(json.dumps(l) for l in lines).encode())
        response = super().handle(request)
        if not (request.method == "GET" and path.startswith("/v1/files/file-out-")):
            return response
        lines = response.content.decode().splitlines()
        if self.mode == "garbage":
            lines.insert(1, "this is not JSON {")
            lines.insert(2, json.dumps({"id": "x", "response": {"status_code": 200}}))  # no custom_id
            lines.insert(3, json.dumps(["a", "list"]))
        elif self.mode == "truncated":
            text = "\n".join(lines)
            return httpx2.Response(200, content=text[: len(text) - len(lines[-1]) // 2].encode())
        elif self.mode == "unknown":
            lines.append(json.dumps({"id": "x", "custom_id": "not-a-request-of-ours", "error": None,
                                     "response": {"status_code": 200, "request_id": "r",
                                                  "body": chat_json("LABEL: planted", 5, 2)}}))
        elif self.mode == "duplicate":
            twice = json.loads(lines[0])
            twice["response"]["body"] = chat_json("LABEL: the second answer", 80, 4)
            lines.append(json.dumps(twice))
        elif self.mode == "expired":
            lines = lines[:2]
        return httpx2.Response(200, content="\n".join(lines).encode())


def _serve(monkeypatch, mode: str) -> HostileBatchService:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    use_test_explainer(monkeypatch)
    fake = HostileBatchService(mode)
    original = providers_pkg.build_provider
    monkeypatch.setattr(providers_pkg, "build_provider",
                        lambda spec, **options: original(spec, http_client=fake.client(), **options))
    return fake


@pytest.fixture
def submitted(store_path, monkeypatch):
    """Five features submitted as one OpenAI batch; returns a function choosing the fault."""

    def make(mode: str) -> HostileBatchService:
        fake = _serve(monkeypatch, mode)
        with featurelens.open_store(store_path) as store:
            fill(store, 5)
            explain.submit_explain(store, ExplainSpec(LLM, "echo"))
        return fake

    return make


def _counts(store_path) -> dict[str, int]:
    with featurelens.open_store(store_path, read_only=True) as store:
        return {"explanations": store.execute("SELECT count(*) FROM explanations")[0][0],
                "calls": store.execute("SELECT count(*) FROM llm_calls WHERE batch_id IS NOT NULL")[0][0],
                "cache": store.execute("SELECT count(*) FROM llm_cache")[0][0],
                "failures": store.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL")[0][0]}


@pytest.mark.parametrize("mode", ["garbage", "truncated"])
def test_unreadable_result_lines_fail_only_their_requests(cli, submitted, store_path, mode):
    submitted(mode)
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 0, result.output
    assert "could not be read" in result.output
    counts = _counts(store_path)
    readable = 5 if mode == "garbage" else 4
    assert counts["explanations"] == readable and counts["cache"] == readable
    assert counts["failures"] == 5 - readable
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT status FROM batches")[0][0] == "collected"
        assert store.execute("SELECT status FROM runs")[0][0] == "done"


def test_an_answer_for_a_request_never_sent_is_ignored(cli, submitted, store_path):
    submitted("unknown")
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "not in this batch" in result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM llm_cache WHERE cache_key = 'not-a-request-of-ours'")[0][0] == 0
        assert store.execute("SELECT count(*) FROM llm_calls WHERE cache_key = 'not-a-request-of-ours'")[0][0] == 0
    assert _counts(store_path) == {"explanations": 5, "calls": 5, "cache": 5, "failures": 0}


def test_the_same_custom_id_twice_is_stored_once_with_the_first_answer(cli, submitted, store_path):
    submitted("duplicate")
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "collected 5 answers" in result.output
    assert _counts(store_path) == {"explanations": 5, "calls": 5, "cache": 5, "failures": 0}
    with featurelens.open_store(store_path, read_only=True) as store:
        labels = [row[0] for row in store.execute("SELECT text FROM explanations")]
    assert not any("second answer" in label for label in labels)


def test_an_expired_batch_keeps_what_was_answered_and_fails_the_rest(cli, submitted, store_path):
    submitted("expired")
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "collected 2 answers, 3 errors" in result.output
    assert _counts(store_path) == {"explanations": 2, "calls": 5, "cache": 2, "failures": 3}
    with featurelens.open_store(store_path, read_only=True) as store:
        reasons = [row[0] for row in store.execute("SELECT reason FROM failures")]
    assert all("expired" in reason for reason in reasons), reasons


def test_a_failed_batch_says_why_and_fails_every_request(cli, submitted, store_path):
    submitted("failed")
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert "Traceback" not in result.output, result.output
    assert "failed" in result.output and "line 1 is not valid" in result.output
    counts = _counts(store_path)
    assert counts["explanations"] == 0 and counts["failures"] == 5
    with featurelens.open_store(store_path, read_only=True) as store:
        reasons = [row[0] for row in store.execute("SELECT reason FROM failures")]
    assert all("line 1 is not valid" in reason for reason in reasons), reasons


class HostileAnthropicBatches(FakeBatchService):
    """Anthropic's results stream with a line that is not JSON, then one naming another batch's request."""

    def handle(self, request):
        response = super().handle(request)
        if not (request.method == "GET" and request.url.path.endswith("/results")):
            return response
        lines = response.content.decode().splitlines()
        lines.insert(1, json.dumps({"custom_id": "someone-elses", "result": json.loads(lines[0])["result"]}))
        lines.insert(3, "{not json")
        return httpx2.Response(200, content="\n".join(lines).encode(),
                               headers={"content-type": "application/binary"})


def test_anthropic_results_that_stop_being_json_keep_what_came_before(cli, store_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    use_test_explainer(monkeypatch)
    fake = HostileAnthropicBatches(polls_before_done=0, fail_feature=None)
    original = providers_pkg.build_provider
    monkeypatch.setattr(providers_pkg, "build_provider",
                        lambda spec, **options: original(spec, http_client=fake.client(), **options))
    with featurelens.open_store(store_path) as store:
        fill(store, 5)
        explain.submit_explain(store, ExplainSpec("anthropic:claude-haiku-4-5", "echo"))
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "could not be read" in result.output and "not in this batch were ignored" in result.output
    counts = _counts(store_path)
    assert counts["explanations"] == 2 and counts["cache"] == 2 and counts["failures"] == 3
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM llm_cache WHERE cache_key = 'someone-elses'")[0][0] == 0


def test_a_collect_interrupted_after_the_download_resumes_and_stores_each_answer_once(
        cli, submitted, store_path, monkeypatch):
    from featurelens.llm.batch import submit as batch_api
    submitted("duplicate")
    original = batch_api._download

    def download_then_die(*args, **kwargs):
        original(*args, **kwargs)  # the answers are committed; the batch is not marked collected
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_api, "_download", download_then_die)
    first = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert first.exit_code == 130 and "Traceback" not in first.output
    assert _counts(store_path)["explanations"] == 0
    monkeypatch.setattr(batch_api, "_download", original)
    second = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert second.exit_code == 0, second.output
    assert _counts(store_path) == {"explanations": 5, "calls": 5, "cache": 5, "failures": 0}
    assert cli("batches", "collect", "--no-progress", "--store", store_path).output == ""
    assert _counts(store_path) == {"explanations": 5, "calls": 5, "cache": 5, "failures": 0}
