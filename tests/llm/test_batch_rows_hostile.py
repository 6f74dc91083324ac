"""Batch rows that are not what featurelens wrote (issue 26, item 10): a ``batches.requests``
value of the wrong shape must not block the next ``explain --batch-api`` nor be blamed on
the provider at collection, and ``batches status`` shows text from the store with its
control characters escaped, never sending an ESC sequence to the terminal."""

from __future__ import annotations

import featurelens
from featurelens.jobs.batch_collection import collect_batches
from featurelens.labelers import explain
from featurelens.labelers.explain import ExplainSpec
from tests.llm.test_batch_collect_hostile import LLM, _serve, fill

ESC = "\x1b]0;owned\x07\x1b[2J"


def _plant(store_path, batch_id: str, requests: str, status: str = "in_progress") -> None:
    with featurelens.open_store(store_path) as store:
        store.execute("INSERT INTO batches (batch_id, provider, model, purpose, status, request_count, "
                      "requests, run_id) VALUES (?, 'openai', 'gpt-4o-mini', 'explain', ?, 1, ?, NULL)",
                      [batch_id, status, requests])


def test_a_garbled_requests_row_does_not_block_a_submission(store_path, monkeypatch):
    fake = _serve(monkeypatch, "ok")
    with featurelens.open_store(store_path) as store:
        fill(store, 3)
    _plant(store_path, "batch_planted", '[1, 2, 3]')
    with featurelens.open_store(store_path) as store:
        submission = explain.submit_explain(store, ExplainSpec(LLM, "echo"))
    assert submission.requests == 3 and fake.batches
    assert any("batch_planted" in line and "damaged" in line for line in submission.lines())


def test_a_garbled_requests_row_is_set_aside_at_collection_not_blamed_on_the_provider(store_path, monkeypatch):
    _serve(monkeypatch, "ok")
    with featurelens.open_store(store_path) as store:
        fill(store, 3)
        explain.submit_explain(store, ExplainSpec(LLM, "echo"))
        [(batch_id,)] = store.execute("SELECT batch_id FROM batches")
        store.execute("UPDATE batches SET requests = '{\"k\": 5}' WHERE batch_id = ?", [batch_id])
    with featurelens.open_store(store_path) as store:
        lines = collect_batches(store, progress=False)
        status = store.execute("SELECT status FROM batches WHERE batch_id = ?", [batch_id])[0][0]
    text = "\n".join(lines)
    assert f"batch {batch_id}: its request list" in text and "not at fault" in text, text
    assert status == "damaged"


def test_batches_status_escapes_control_characters(cli, store_path, monkeypatch):
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    featurelens.open_store(store_path).close()
    _plant(store_path, f"batch_{ESC}", '{}', status=f"done{ESC}")
    result = cli("batches", "status", "--no-refresh", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "]0;owned" in result.output  # shown as text, never obeyed
