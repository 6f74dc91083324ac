
"""``featurelens label --executor ray``: explanation and scoring requests answered on Ray
workers, the store written once by this process, the same rows as an in-process label."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from llm_fixtures import serve_chat
from ray_cluster import ray_cluster  # noqa: F401 - fixture
from scale_fixtures import expected, job  # noqa: F401 - fixtures

import featurelens

RESULTS = {
    "explanations": "SELECT dictionary_id, feature, explainer, llm, text FROM explanations ORDER BY ALL",
    "scores": "SELECT * EXCLUDE (score_id, created_at, run_id, explanation_id) FROM scores ORDER BY ALL",
    "failures": "SELECT stage, dictionary_id, feature, reason, method FROM failures ORDER BY ALL",
    "llm_calls": "SELECT cache_key, purpose, dictionary_id, feature, status FROM llm_calls ORDER BY ALL",
}


@pytest.fixture
def chat_server():
    """OpenAI chat completions on localhost: a label for explain, a 0/1 list for detection."""
    def answer(body: dict) -> str:
        text = json.dumps(body["messages"])
        return "[1, 0, 1, 0, 1]" if "Example 5" in text or "[1,0" in text else "numbers followed by a colon"

    yield from serve_chat(answer)


def _results(store: Path) -> dict:
    with featurelens.open_store(store, read_only=True) as db:
        return {name: db.sql(query) for name, query in RESULTS.items()}


@pytest.mark.slow
def test_label_on_ray_workers_writes_the_in_process_rows_once(ray_cluster, cli, expected: Path, chat_server,
                                                              tmp_path: Path, monkeypatch) -> None:
    url, seen = chat_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only")
    alone, sharded = tmp_path / "alone.duckdb", tmp_path / "ray.duckdb"
    shutil.copy(expected, alone)
    shutil.copy(expected, sharded)
    common = ("label", "--llm", "openai:gpt-4o-mini", "--scorer", "detection", "--limit", "3", "--no-progress",
              "--no-batch-api", "--option", "features_per_request=1",  # the server answers one label a request
              "--provider-option", f"base_url={url}", "--rpm", "6000")
    first = cli(*common, "--store", alone)
    assert first.exit_code in (0, 3), first.output
    in_process = len(seen)
    result = cli(*common, "--store", sharded, "--executor", "ray", "--workers", "2")
    assert result.exit_code == first.exit_code, result.output
    assert in_process >= 6 and len(seen) == 2 * in_process  # every request sent once, from the workers
    want, got = _results(alone), _results(sharded)
    assert want["explanations"].height == 3
    assert want["scores"].height == 3  # the scoring stage ran on the workers too
    for name in RESULTS:
        assert got[name].equals(want[name]), f"{name} differs from the in-process label"
