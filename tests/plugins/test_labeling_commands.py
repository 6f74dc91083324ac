"""``featurelens explain`` end to end: dry run, bad input, and kill -9 then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from llm_fixtures import fill

import featurelens

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def filled(store_path):
    with featurelens.open_store(store_path) as store:
        fill(store, 30)
    return store_path


def test_dry_run_prints_calls_tokens_and_cost_and_sends_nothing(cli, filled, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # nothing is sent, so no key needed
    result = cli("explain", "--llm", "openai:gpt-4o-mini", "--where", "density >= 0.1",
                 "--limit", "12", "--dry-run", "--store", filled)
    assert result.exit_code == 0, result.output
    assert "features to label:   12 (0 already done)" in result.output
    assert "LLM calls:           3 " in result.output  # an API model gets 4 features a request
    assert "estimated cost:      $" in result.output
    with featurelens.open_store(filled) as store:
        assert store.execute("SELECT count(*) FROM llm_calls")[0][0] == 0
        assert store.execute("SELECT count(*) FROM runs")[0][0] == 0


def test_unknown_price_is_said_not_invented(cli, filled):
    result = cli("explain", "--llm", "openai:some-new-model", "--limit", "2", "--dry-run",
                 "--store", filled)
    assert "unknown (no price for this model; add one with --prices)" in result.output


@pytest.mark.parametrize("args, message", [
    (["--where", "densty > 0"], "is not valid SQL over the features table"),
    (["--dictionary", "nope"], "The store has no dictionary 'nope'"),
    (["--llm", "gpt-4o"], "is not of the form provider:model"),
    (["--llm", "mystery:x"], "No llm provider is called 'mystery'"),
    (["-o", "n_examples"], "is not of the form key=value"),
    (["-o", "colour=blue"], "does not take the option(s) colour"),
])
def test_bad_input_is_one_sentence_and_leaves_the_store_alone(cli, filled, args, message):
    result = cli("explain", "--dry-run", *args, "--store", filled)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_key_is_one_sentence(cli, filled, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    result = cli("explain", "--llm", "openai:gpt-4o-mini", "--limit", "1", "--store", filled)
    assert result.exit_code == 1
    assert "set the OPENAI_API_KEY environment variable" in result.output


def _start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "featurelens.testing.stub_server",
                               "--latency", str(latency), "--report-every", "50"],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    assert line.startswith("PORT "), line
    return server, f"http://127.0.0.1:{line.split()[1]}/v1"


def test_kill_9_then_rerun_loses_and_duplicates_nothing(store_path, tmp_path):
    with featurelens.open_store(store_path) as store:
        fill(store, 200)
    server, base_url = _start_stub(0.05)
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "",
           "FEATURELENS_LOAD_PLUGINS": ""}
    command = [sys.executable, "-m", "featurelens.cli", "explain", "--llm", "openai:stub",
               "--option", "features_per_request=1",  # 200 requests, so "SERVED 100" is half-way
               "--concurrency", "4", "--no-progress", "--store", str(store_path)]
    try:
        victim = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        while server.stdout.readline().strip() != "SERVED 100":  # half-way through
            assert victim.poll() is None
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        with featurelens.open_store(store_path, read_only=True) as store:
            partial = store.execute("SELECT count(*) FROM explanations")[0][0]
        assert 0 < partial < 200
        finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=120)
        assert finished.returncode == 0, finished.stderr
        with featurelens.open_store(store_path, read_only=True) as store:
            total, distinct_features, ids = store.execute(
                "SELECT count(*), count(DISTINCT feature), count(DISTINCT explanation_id) "
                "FROM explanations")[0]
            assert (total, distinct_features, ids) == (200, 200, 200)
            assert store.execute("SELECT count(*) FROM failures")[0][0] == 0
            assert store.execute("SELECT count(*) FROM explanations WHERE text = ''")[0][0] == 0
            paid = store.execute("SELECT count(*) FROM llm_calls WHERE status = 'ok'")[0][0]
        assert f"explained {200 - partial:,} features" in finished.stdout
        assert f"{partial:,} already done" in finished.stdout
        # only what was in flight or not yet flushed (< 1 s, ~80 answers) may be asked twice
        assert paid <= 200 + 100
    finally:
        server.kill()
        server.wait()
