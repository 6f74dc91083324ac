"""A submission of several provider files and its collection, each SIGKILLed part way, pay
for every request once and lose no answer: ``explain --batch-api`` cut into files of 2
requests (``--provider-option batch_requests=2``) is killed at its second file (at the
upload, or after the provider created the batch unseen), ``batches collect`` is killed
when it asks for the second batch's results, and the resumed commands end with one
answer a request and one explanation a feature. Real openai/anthropic SDKs against a
loopback server (tests/batch_server.py), the CLI a subprocess so the kills are real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from batch_server import BatchServer
from llm_fixtures import fill

import featurelens

ROOT = Path(__file__).resolve().parents[2]
LLMS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-haiku-4-5"}
N = 5  #: features: files of 2, 2 and 1 requests
EXPLAIN = ("explain", "--option", "features_per_request=1", "--batch-api", "--provider-option",
           "batch_requests=2")


@pytest.fixture
def server(monkeypatch):
    fake = BatchServer()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    yield fake
    fake.stop()


def killed(server: BatchServer, store_path: Path, at: str, after: int, *command: str) -> str:
    """Run ``featurelens COMMAND`` as a subprocess the server SIGKILLs at the ``after``+1-th ``at``."""
    server.kill_at, server.kill_after, server.pid = at, after, None
    env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "featurelens", *command, "--no-progress", "--store",
                             str(store_path)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    server.pid = proc.pid
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == -9, output  # SIGKILLed, not an ordinary exit
    assert server.kill_at is None
    return output


def billed(server: BatchServer) -> Counter:
    """How many created (billed) batches hold each request."""
    held: Counter = Counter()
    for batch in server.batches.values():
        lines = server.files[batch["input"]] if batch["kind"] == "openai" else batch["requests"]
        held.update(line["custom_id"] for line in lines)
    return held


def stored(store_path: Path) -> tuple[list[tuple], int, list[tuple], list[tuple]]:
    with featurelens.open_store(store_path, read_only=True) as store:
        batches = store.execute("SELECT status, request_count FROM batches ORDER BY created_at")
        cached = store.execute("SELECT count(*) FROM llm_cache")[0][0]
        calls = store.execute("SELECT cache_key, count(*) FROM llm_calls WHERE status = 'ok' GROUP BY 1")
        explained = store.execute("SELECT feature, count(*) FROM explanations GROUP BY 1 ORDER BY 1")
    return batches, cached, calls, explained


@pytest.mark.parametrize("kind,at", [("openai", "create"), ("openai", "upload"),
                                     pytest.param("anthropic", "create", marks=pytest.mark.slow)])
def test_a_submission_of_several_files_and_its_collection_killed_part_way_pay_once(
        cli, server, store_path, kind, at):
    llm = LLMS[kind]
    with featurelens.open_store(store_path) as store:
        fill(store, N)

    killed(server, store_path, at, 1, *EXPLAIN, "--llm", llm)  # the second file
    first_file = 1 if at == "upload" else 2  # "create": the second batch exists, unrecorded
    assert server.creates == first_file
    batches, _, _, _ = stored(store_path)
    assert [status for status, _ in batches] == ["submitted", "submitting"], batches

    again = cli(*EXPLAIN, "--llm", llm, "--no-progress", "--store", store_path)
    assert again.exit_code == 0, again.output
    if at == "create":
        assert "had reached" in again.output and "submitted 1 requests" in again.output, again.output
        assert "4 already waiting" in again.output, again.output
    else:
        assert "never reached" in again.output and "submitted 3 requests" in again.output, again.output
    assert server.creates == 3
    held = billed(server)
    assert len(held) == N and set(held.values()) == {1}, held  # no request in two billed batches

    killed(server, store_path, "results", 1, "batches", "collect")  # after the first batch's download
    batches, cached, _, explained = stored(store_path)
    assert [status for status, _ in batches].count("collected") == 1, batches
    assert cached == 2 and explained == []  # the first batch's answers are kept, nothing written yet

    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert f"wrote {N} results" in result.output, result.output
    batches, cached, calls, explained = stored(store_path)
    assert [status for status, _ in batches] == ["collected"] * 3
    assert cached == N and sorted(held) == sorted(key for key, _ in calls)
    assert all(count == 1 for _, count in calls), calls  # every answer recorded once
    assert explained == [(f, 1) for f in range(N)]
    assert server.creates == 3


def test_batch_requests_must_be_a_whole_number(cli, server, store_path):
    with featurelens.open_store(store_path) as store:
        fill(store, 2)
    result = cli("explain", "--batch-api", "--llm", LLMS["openai"], "--provider-option", "batch_requests=0",
                 "--store", store_path)
    assert result.exit_code == 1
    assert "batch_requests option must be a whole number >= 1" in result.output, result.output
    assert server.creates == 0


def test_the_same_prompt_in_two_files_of_one_submission_is_sent_once(server, store_path):
    """Two features whose windows are identical make one request (one cache key); with a file
    a request, the second must not go out in a later file and be paid twice."""
    import polars as pl

    from featurelens.labelers import explain
    from featurelens.labelers.explain import ExplainSpec

    with featurelens.open_store(store_path) as store:
        fill(store, N)
        twin = store.sql("SELECT * FROM examples WHERE feature = 0").with_columns(pl.lit(N).alias("feature"))
        row = store.sql("SELECT * FROM features WHERE feature = 0").with_columns(pl.lit(N).alias("feature"))
        with store.transaction():
            store.insert("features", row)
            store.insert("examples", twin)
        submission = explain.submit_explain(
            store, ExplainSpec(LLMS["openai"], explainer_options=(("features_per_request", 1),)),
            provider_options={"batch_requests": 1})
    assert submission.features == N + 1 and submission.requests == N, submission.lines()
    assert submission.already_submitted == 1 and server.creates == N
    assert set(billed(server).values()) == {1}
