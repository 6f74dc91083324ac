"""Never pay twice for a ``label --batch-api`` batch: the explanation batch's create (in
``label``) and the scoring batch's create (in the ``batches collect`` that submits it) are
each SIGKILLed after the provider made the batch, and the resumed commands end with the
store an uninterrupted run writes; real openai/anthropic SDKs against a loopback server
(tests/batch_server.py), the CLI a subprocess so the kill is real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from batch_server import BatchServer
from llm_fixtures import fill

import featurelens

ROOT = Path(__file__).resolve().parents[2]
LLMS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-haiku-4-5"}
N = 4
LABEL = ("label", "--option", "features_per_request=1", "--scorer", "detection", "--batch-api")


class LabelBatchServer(BatchServer):
    """Answers detection prompts with a 0/1 list as long as the prompt's examples."""

    def answer(self, request: dict[str, Any]) -> str:
        if "We study features" not in json.dumps(request):
            return super().answer(request)
        last = request["messages"][-1]["content"]
        text = last if isinstance(last, str) else "".join(block.get("text", "") for block in last)
        n = text.count("</example ")
        return "[" + ",".join("1" if i % 2 == 0 else "0" for i in range(n)) + "]"


@pytest.fixture
def servers(monkeypatch):
    """``start()`` a fresh provider (its own account: no batch of another run to confuse) and
    point the environment at it."""
    started: list[LabelBatchServer] = []

    def start() -> LabelBatchServer:
        fake = LabelBatchServer()
        started.append(fake)
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        return fake

    yield start
    for fake in started:
        fake.stop()


def _filled(path: Path) -> Path:
    """N features with top windows, and silent random windows so detection has negatives."""
    with featurelens.open_store(path) as store:
        fill(store, N)
        silent = [{"dictionary_id": "d1", "feature": f, "kind": "random", "rank": r, "corpus_id": "c1",
                   "sequence_id": 8 + (f + r) % 8, "activations": [0.0] * 8, "max_activation": 0.0,
                   "max_position": 0} for f in range(N) for r in range(3)]
        with store.transaction():
            store.insert("examples", pl.DataFrame(silent))
    return path


def killed(server: BatchServer, store_path: Path, *command: str) -> None:
    """Run ``featurelens COMMAND`` as a subprocess that the server kills at the batch create."""
    server.kill_at, server.pid = "create", None
    env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "featurelens", *command, "--store", str(store_path)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server.pid = proc.pid
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == -9, output  # SIGKILLed at the create call, not an ordinary exit
    assert server.kill_at is None


def batch_rows(store_path: Path) -> list[tuple]:
    with featurelens.open_store(store_path, read_only=True) as store:
        return store.execute("SELECT purpose, status, request_count FROM batches ORDER BY created_at")


def results(store_path: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The explanations, scores and label runs a store holds (ids and timings left out)."""
    with featurelens.open_store(store_path, read_only=True) as store:
        explanations = store.execute("SELECT feature, explainer, llm, text FROM explanations ORDER BY ALL")
        scores = store.execute("SELECT feature, scorer, llm, status, round(score, 9), n_windows "
                               "FROM scores ORDER BY ALL")
        runs = store.execute("SELECT kind, status FROM runs ORDER BY ALL")
        paid = store.execute("SELECT cache_key, count(*) FROM llm_calls WHERE status = 'ok' "
                             "GROUP BY 1 HAVING count(*) > 1")
    assert paid == [], paid  # every answer written once
    return explanations, scores, runs


def collect(cli, store_path: Path) -> str:
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0, result.output
    return result.output


# Anthropic's reconciliation is in the fast suite through explain (tests/llm/test_batch_intent.py);
# here it costs two more CLI subprocesses, so it runs with the slow tests.
@pytest.mark.parametrize("kind", ["openai", pytest.param("anthropic", marks=pytest.mark.slow)])
def test_label_killed_at_each_batch_create_pays_once_and_ends_like_an_uninterrupted_run(
        cli, servers, tmp_path, kind):
    llm = LLMS[kind]
    server = servers()
    # The uninterrupted run: label submits the explanations, the first collect writes them and
    # submits the scoring batch, the second writes the scores.
    whole = _filled(tmp_path / "whole.duckdb")
    assert cli(*LABEL, "--llm", llm, "--store", whole).exit_code == 0
    collect(cli, whole)
    assert "label run complete" in collect(cli, whole)
    expected = results(whole)
    assert len(expected[0]) == N and len(expected[1]) == N and ("label", "done") in expected[2]
    assert server.creates == 2

    server = servers()
    store_path = _filled(tmp_path / "killed.duckdb")
    # 1. Killed after the provider created the explanation batch, before label heard of it.
    killed(server, store_path, *LABEL, "--llm", llm)
    assert server.creates == 1
    assert batch_rows(store_path) == [("explain", "submitting", N)]
    again = cli(*LABEL, "--llm", llm, "--store", store_path)
    assert again.exit_code == 0, again.output
    assert f"had reached {llm} as batch" in again.output and "submitted 0 requests" in again.output
    assert server.creates == 1
    assert batch_rows(store_path) == [("explain", "submitted", N)]

    # 2. The collect that writes the explanations submits the scoring batch: killed at its create.
    killed(server, store_path, "batches", "collect", "--no-progress")
    assert server.creates == 2
    assert [row[:2] for row in batch_rows(store_path)][-1] == ("score:detection", "submitting")

    # 3. Resumed: the next collects find the scoring batch instead of creating another.
    outputs = collect(cli, store_path)
    if "label run complete" not in outputs:
        outputs += collect(cli, store_path)
    assert "label run complete" in outputs, outputs
    assert "reached" in outputs and "never reached" not in outputs, outputs
    assert server.creates == 2  # one explanation batch, one scoring batch: nothing paid twice
    assert results(store_path) == expected
    assert sorted(row[0] for row in batch_rows(store_path)) == ["explain", "score:detection"]
