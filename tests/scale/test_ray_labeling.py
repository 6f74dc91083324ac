# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""Labeling across Ray workers: same store as in process, each result once; one shared rate limit.

Ray is optional (``featurelens[ray]``, installed by the test extra); these tests skip where
it is missing. The cluster is small (2 CPUs) and shut down in teardown.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from ray_cluster import ray_cluster  # noqa: F401 - fixture
from scale_fixtures import expected, job  # noqa: F401 - fixtures
from seeded_store import seeded

import featurelens

RESULTS = {  # what the labeling runs wrote; ids, times and run ids aside
    "explanations": "SELECT dictionary_id, feature, explainer, llm, text, options FROM explanations ORDER BY ALL",
    "scores": "SELECT * EXCLUDE (created_at, run_id) FROM scores ORDER BY ALL",
    "failures": "SELECT stage, dictionary_id, feature, reason, method, attempts, answer FROM failures ORDER BY ALL",
    "llm_cache": "SELECT cache_key, response FROM llm_cache ORDER BY ALL",
    "llm_calls": "SELECT cache_key, purpose, dictionary_id, feature, status, input_tokens, output_tokens "
                 "FROM llm_calls ORDER BY ALL",
}
UNIQUE = {"explanations": "explanation_id", "scores": "score_id", "llm_cache": "cache_key"}


def _results(store: Path) -> dict:
    with featurelens.open_store(store, read_only=True) as db:
        return {name: db.sql(query) for name, query in RESULTS.items()}


def _label(cli, store: Path, llm: str, *executor: str) -> None:
    for command in (("explain", "--limit", "3"), ("score", "--scorer", "simulation", "--explainer", "seed")):
        result = cli(*command, "--llm", llm, "--no-progress", "--store", store, *executor)
        assert result.exit_code in (0, 3, 4), result.output  # 3/4: some or all answers unreadable
        assert "Traceback" not in result.output


# The fast suite keeps test_api_provider_on_workers_with_a_shared_limit_writes_once (the same
# two-worker run writing the in-process rows once) and test_requests_are_spread_over_the_workers
# (the local model answering on both workers); this one adds the score stage on a local model.
@pytest.mark.slow
def test_two_workers_write_the_in_process_results_once(ray_cluster, cli, expected: Path, tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    llm = f"local:{tiny_model_dir}"
    alone, sharded = seeded(expected, tmp_path / "alone.duckdb"), seeded(expected, tmp_path / "ray.duckdb")
    _label(cli, alone, llm)
    _label(cli, sharded, llm, "--executor", "ray", "--workers", "2")
    want, got = _results(alone), _results(sharded)
    assert want["llm_calls"].height >= 6 and want["scores"].height == 3
    for name in RESULTS:
        assert got[name].equals(want[name]), f"{name} differs from the in-process run"
    with featurelens.open_store(sharded, read_only=True) as db:
        for table, key in UNIQUE.items():
            assert db.execute(f"SELECT count(*) = count(DISTINCT {key}) FROM {table}")[0][0], table


@pytest.mark.slow
def test_requests_are_spread_over_the_workers(ray_cluster, tiny_model_dir: Path) -> None:
    from featurelens.core.host.protocols import LLMRequest
    from featurelens.scale.remote_provider import ray_provider

    request = LLMRequest(messages=[{"role": "user", "content": "Say hi"}], max_tokens=3)
    with ray_provider(f"local:{tiny_model_dir}", workers=2) as provider:
        async def four():
            return await asyncio.gather(*(provider.complete(request) for _ in range(4)))

        answers = asyncio.run(four())
        assert provider.capabilities == frozenset({"output_logprobs", "prompt_logprobs"})
        assert provider.answered == [2, 2]
    assert len({answer.text for answer in answers}) == 1 and answers[0].output_tokens > 0


@pytest.mark.slow
def test_two_clients_of_one_limiter_stay_under_the_shared_limit(ray_cluster) -> None:
    """Each client alone asks for 55 % of a minute's quota, together 110 %: the bucket
    starts with one minute's quota, so the last 10 % must wait 6 s at the refill rate.
    Two separate limiters would let both finish at once."""
    from featurelens.scale.limiter import (
        SharedRateLimiter,
        limiter_name,
        shared_limiter,
    )

    ray = ray_cluster
    tpm, count, tokens = 60_000, 12, 2_750  # per client 33,000 tokens; together 66,000 = 1.1 x tpm
    actor = shared_limiter(ray, "openai:test-limiter", None, tpm)

    @ray.remote(num_cpus=1)
    def client(limiter_actor, count: int, tokens: int) -> list[float]:
        limiter = SharedRateLimiter(limiter_actor)

        async def run() -> list[float]:
            stamps = []
            for _ in range(count):
                await limiter.acquire(tokens)
                stamps.append(time.time())
            return stamps

        return asyncio.run(run())

    try:
        started = time.time()
        stamps = sorted(t for each in ray.get([client.remote(actor, count, tokens) for _ in range(2)]) for t in each)
        assert len(stamps) == 2 * count
        need = (2 * count * tokens - tpm) / (tpm / 60.0)  # 6 s of refill for the excess
        elapsed = stamps[-1] - started
        assert elapsed >= 0.95 * need, f"66,000 tokens granted in {elapsed:.1f} s: over the shared limit"
        # and at every grant, what was granted so far never exceeded the quota plus its refill
        for index, stamp in enumerate(stamps, start=1):
            assert index * tokens <= tpm + (stamp - started) * tpm / 60.0 + tokens
    finally:
        ray.kill(ray.get_actor(limiter_name("openai:test-limiter", None, tpm), namespace="featurelens"))


def test_address_without_ray_executor_is_one_sentence(cli, store_path: Path) -> None:
    featurelens.open_store(store_path).close()
    result = cli("explain", "--address", "auto", "--store", store_path)
    assert result.exit_code != 0
    assert "--address only applies with --executor ray" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("--executor", "ray", "--batch-api"), "--executor ray sends requests from Ray workers"),
    (("--executor", "ray", "--llm", "local:/no/such/model"), "is neither the embedded model"),
])
def test_bad_ray_labeling_options_are_one_sentence(cli, expected: Path, tmp_path: Path, args: tuple,
                                                   message: str) -> None:
    store = tmp_path / "store.duckdb"
    shutil.copy(expected, store)
    before = _results(store)
    result = cli("explain", "--store", store, *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    after = _results(store)
    assert all(after[name].equals(before[name]) for name in RESULTS)  # nothing half-written


@pytest.fixture
def chat_server():
    """A real HTTP server on localhost answering OpenAI chat completions: the workers are other
    processes, so the SDK must be faked on the wire, not inside this process."""
    from llm_fixtures import serve_chat

    yield from serve_chat(lambda body: "numbers followed by a colon")


def test_api_provider_on_workers_with_a_shared_limit_writes_once(ray_cluster, cli, expected: Path,
                                                                  chat_server, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = chat_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only")
    alone, sharded = tmp_path / "alone.duckdb", tmp_path / "ray.duckdb"
    shutil.copy(expected, alone)
    shutil.copy(expected, sharded)
    common = ("explain", "--llm", "openai:gpt-4o-mini", "--limit", "4", "--no-progress", "--no-batch-api",
              "--option", "features_per_request=1",  # four requests, one a feature
              "--provider-option", f"base_url={url}", "--rpm", "600")
    assert cli(*common, "--store", alone).exit_code == 0
    in_process = len(seen)
    result = cli(*common, "--store", sharded, "--executor", "ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert in_process == 4 and len(seen) == 8  # every request sent once, from the workers
    want, got = _results(alone), _results(sharded)
    for name in ("explanations", "llm_cache", "llm_calls", "failures"):
        assert got[name].equals(want[name]), f"{name} differs from the in-process run"
    assert want["explanations"].height == 4
    with featurelens.open_store(sharded, read_only=True) as db:
        assert "sk-test-only" not in str(db.sql("SELECT * FROM llm_calls").to_dicts())
