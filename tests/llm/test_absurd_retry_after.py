"""Absurd ``retry-after`` headers: a server that says ``1e9``, ``inf``,
a date decades ahead, ``-1``, ``nan`` or ``soon`` must neither stall a run forever nor
crash it; the wait stays within the policy's cap and the call is retried."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai
import pytest
from hostile_server import HostileServer, answer, error
from llm_fixtures import fill

import featurelens
from featurelens.llm.retry import RetryPolicy, classify

TESTS = Path(__file__).resolve().parents[1]


def _rate_limited(headers: dict[str, str]) -> openai.RateLimitError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return openai.RateLimitError("slow down", response=httpx2.Response(429, headers=headers, request=request),
                                 body=None)


@pytest.mark.parametrize("value", ["1e9", "inf", "Wed, 21 Oct 2099 07:28:00 GMT", "-1", "nan", "soon",
                                   "Wed, 99 Foo", "1e999"])
@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_an_absurd_retry_after_waits_at_most_the_cap_and_is_retried(header, value):
    verdict = classify(_rate_limited({header: value}))
    assert verdict.retryable
    policy = RetryPolicy(base_s=0.5, cap_s=30.0)
    waits = [policy.delay(attempt, verdict.retry_after) for attempt in range(6)]
    assert all(0.0 <= w <= 30.0 for w in waits), waits  # the backoff, never the header's ages


def test_a_sane_retry_after_is_still_honoured():
    verdict = classify(_rate_limited({"retry-after": "7"}))
    assert verdict.retry_after == 7.0
    assert 7.0 <= RetryPolicy().delay(0, verdict.retry_after) <= 7.7
    past = classify(_rate_limited({"retry-after": "Mon, 01 Jan 1990 00:00:00 GMT"}))
    assert past.retry_after == 0.0


def test_explain_finishes_against_a_server_sending_absurd_retry_after(tmp_path):
    """End to end through the CLI: one 429 with each absurd value, then answers."""
    values = ["1e9", "soon", "Wed, 21 Oct 2099 07:28:00 GMT", "inf"]

    def behave(n, path, headers, body):
        if n <= len(values):
            return error(path, 429, "slow down", {"retry-after": values[n - 1]})
        return answer(path, "Explanation: numbers")

    store_path = tmp_path / "store.duckdb"
    with featurelens.open_store(store_path) as store:
        fill(store, 2, n_sequences=16)
    server = HostileServer(behave).start()
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OPENAI_API_KEY": "sk-retry-after-test-0123",
           "FEATURELENS_LOAD_PLUGINS": ""}
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "featurelens", "explain", "--option", "features_per_request=1", "--llm", "openai:hostile", "--provider-option",
             f"base_url={server.openai_url}", "--concurrency", "1", "--no-progress", "--store", str(store_path)],
            capture_output=True, text=True, env=env, timeout=90)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 90
    with featurelens.open_store(store_path, read_only=True) as store:
        outcomes = dict(store.execute("SELECT outcome, count(*) FROM llm_attempts GROUP BY 1"))
    assert outcomes == {"retried": len(values), "ok": 2}, outcomes
    assert server.seen == len(values) + 2
