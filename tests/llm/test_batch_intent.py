"""Never pay twice for a provider batch: ``featurelens explain --batch-api`` is SIGKILLed
(a subprocess) at the create call, and the rerun finds the batch instead of creating
another; real openai/anthropic SDKs against a loopback server (tests/batch_server.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from batch_server import BatchServer
from llm_fixtures import fill

import featurelens

ROOT = Path(__file__).resolve().parents[2]
LLMS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-haiku-4-5"}
N = 5


@pytest.fixture
def server(monkeypatch):
    fake = BatchServer()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    yield fake
    fake.stop()


@pytest.fixture
def filled(store_path):
    with featurelens.open_store(store_path) as store:
        fill(store, N)
    return store_path


def killed_submit(server: BatchServer, store_path: Path, llm: str, at: str) -> None:
    """Run ``explain --batch-api`` as a subprocess that the server kills at ``at``."""
    server.kill_at = at
    env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "featurelens", "explain", "--option", "features_per_request=1", "--llm", llm, "--batch-api",
                             "--store", str(store_path)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server.pid = proc.pid
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == -9, output  # SIGKILLed at the create call, not an ordinary exit
    assert server.kill_at is None


def rows(store_path: Path) -> list[tuple]:
    with featurelens.open_store(store_path, read_only=True) as store:
        return store.execute("SELECT batch_id, status, request_count FROM batches ORDER BY created_at")


def explain(cli, store_path: Path, llm: str):
    return cli("explain", "--option", "features_per_request=1", "--llm", llm, "--batch-api", "--store", store_path)


def assert_collected_once(cli, store_path: Path, batch_id: str) -> None:
    result = cli("batches", "collect", "--no-progress", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert f"batch {batch_id}: collected {N} answers" in result.output, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        calls = store.execute("SELECT cache_key, count(*) FROM llm_calls WHERE status = 'ok' GROUP BY 1")
        explained = store.execute("SELECT count(*), count(DISTINCT feature) FROM explanations")[0]
    assert len(calls) == N and all(count == 1 for _, count in calls), calls
    assert explained == (N, N)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_killed_after_the_provider_created_the_batch_is_never_paid_twice(cli, server, filled, kind):
    killed_submit(server, filled, LLMS[kind], "create")
    assert server.creates == 1
    [(placeholder, status, count)] = rows(filled)
    assert status == "submitting" and placeholder.startswith("featurelens-") and count == N
    if kind == "openai":  # the placeholder travelled with the batch
        [batch] = server.batches.values()
        assert batch["metadata"] == {"featurelens_submission": placeholder}

    result = explain(cli, filled, LLMS[kind])
    assert result.exit_code == 0, result.output
    [batch_id] = server.batches
    assert f"batch submission {placeholder} had reached {LLMS[kind]} as batch {batch_id}" in result.output
    assert f"submitted 0 requests" in result.output and f"{N} already waiting" in result.output
    assert server.creates == 1  # nothing was created a second time
    assert rows(filled) == [(batch_id, "submitted", N)]
    assert_collected_once(cli, filled, batch_id)
    assert server.creates == 1


@pytest.mark.parametrize("kind,at", [("openai", "upload"), ("openai", "create-lost"),
                                     ("anthropic", "create-lost")])
def test_killed_before_the_create_reached_the_provider_submits_once(cli, server, filled, kind, at):
    killed_submit(server, filled, LLMS[kind], at)
    assert server.creates == 0
    [(placeholder, status, _)] = rows(filled)
    assert status == "submitting"

    result = explain(cli, filled, LLMS[kind])
    assert result.exit_code == 0, result.output
    assert f"batch submission {placeholder} never reached {LLMS[kind]}" in result.output
    assert f"submitted {N} requests" in result.output
    assert server.creates == 1
    [batch_id] = server.batches
    assert rows(filled) == [(batch_id, "submitted", N)]
    assert_collected_once(cli, filled, batch_id)


def _one_sentence(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


@pytest.mark.parametrize("decision", ["adopt", "forget"])
def test_ambiguous_anthropic_candidates_are_refused_then_adopted_or_forgotten(cli, server, filled, decision):
    killed_submit(server, filled, LLMS["anthropic"], "create")
    ours = next(iter(server.batches))
    other = server.add_anthropic(N)  # someone else's batch of the same size, created meanwhile
    [(placeholder, _, _)] = rows(filled)

    for command in (["explain", "--option", "features_per_request=1", "--llm", LLMS["anthropic"], "--batch-api"], ["batches", "collect"],
                    ["batches", "status"]):
        output = _one_sentence(cli(*command, "--store", filled))
        assert placeholder in output and ours in output and other in output, output
        assert f"batches adopt {placeholder} BATCH_ID" in output and f"batches forget {placeholder}" in output
    assert server.creates == 1 and rows(filled) == [(placeholder, "submitting", N)]

    if decision == "adopt":
        result = cli("batches", "adopt", placeholder, ours, "--store", filled)
        assert result.exit_code == 0 and f"is batch {ours} (ended)" in result.output, result.output
        assert rows(filled) == [(ours, "submitted", N)]
        again = explain(cli, filled, LLMS["anthropic"])
        assert again.exit_code == 0 and "submitted 0 requests" in again.output, again.output
        assert server.creates == 1
        assert_collected_once(cli, filled, ours)
    else:
        result = cli("batches", "forget", placeholder, "--store", filled)
        assert result.exit_code == 0 and f"its {N} requests are sent again" in result.output, result.output
        assert rows(filled) == []
        again = explain(cli, filled, LLMS["anthropic"])
        assert again.exit_code == 0 and f"submitted {N} requests" in again.output, again.output
        assert server.creates == 2  # the user said the first was not ours
        [(batch_id, _, _)] = rows(filled)
        assert_collected_once(cli, filled, batch_id)


def test_adopt_and_forget_refuse_bad_input_in_one_sentence(cli, server, filled):
    # a pending submission and the batch it became, as a kill at the create leaves them
    # (the kill itself is tested above; here only the commands' input is)
    from featurelens.llm.batch import intent as batch_intent
    from featurelens.llm.providers import build_provider

    with featurelens.open_store(filled) as store:
        batch_intent.record_intent(store, build_provider(LLMS["anthropic"]), purpose="explain", run_id="r",
                                   request_count=N, requests={f"k{i}": ["d1", i, "explain"] for i in range(N)})
    server.add_anthropic(N)
    [(placeholder, _, _)] = rows(filled)
    before = rows(filled)
    unknown = _one_sentence(cli("batches", "adopt", placeholder, "msgbatch_nope", "--store", filled))
    assert "knows no batch msgbatch_nope" in unknown and "nothing was changed" in unknown
    not_ours = _one_sentence(cli("batches", "forget", "featurelens-missing", "--store", filled))
    assert "featurelens-missing is not a pending batch submission" in not_ours
    assert rows(filled) == before
    # once it is a real batch it can be neither adopted again nor forgotten
    [ours] = server.batches
    assert cli("batches", "adopt", placeholder, ours, "--store", filled).exit_code == 0
    assert "status submitted" in _one_sentence(cli("batches", "forget", ours, "--store", filled))
    assert rows(filled) == [(ours, "submitted", N)]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_provider_down_during_reconcile_keeps_the_row_and_sends_nothing(cli, server, filled, kind):
    killed_submit(server, filled, LLMS[kind], "create")
    [(placeholder, _, _)] = rows(filled)
    server.down = True
    for command in (["explain", "--option", "features_per_request=1", "--llm", LLMS[kind], "--batch-api"], ["batches", "status"],
                    ["batches", "collect"]):
        output = _one_sentence(cli(*command, "--store", filled))
        assert f"whether batch submission {placeholder} ({N} requests) reached it" in output, output
        assert "none of its requests is sent again" in output and "sk-test" not in output
    assert server.creates == 1 and rows(filled) == [(placeholder, "submitting", N)]
    server.down = False
    result = explain(cli, filled, LLMS[kind])
    assert result.exit_code == 0 and "submitted 0 requests" in result.output, result.output
    assert server.creates == 1


def test_one_batch_that_two_pending_submissions_could_be_settles_neither(cli, server, filled):
    from featurelens.llm.batch import intent as batch_intent
    from featurelens.llm.providers import build_provider

    provider = build_provider(LLMS["anthropic"])
    with featurelens.open_store(filled) as store:
        first, second = (batch_intent.record_intent(store, provider, purpose="explain", run_id="r",
                                                    request_count=N, requests={f"k{i}": ["d1", i, "explain"]})
                         for i in range(2))
    only = server.add_anthropic(N)
    output = _one_sentence(cli("batches", "status", "--store", filled))
    assert first in output and only in output and "another pending submission of the same size" in output
    assert sorted(r[1] for r in rows(filled)) == ["submitting", "submitting"]
    assert cli("batches", "forget", second, "--store", filled).exit_code == 0
    result = cli("batches", "status", "--store", filled)
    assert result.exit_code == 0, result.output
    assert rows(filled) == [(only, "ended", N)]
