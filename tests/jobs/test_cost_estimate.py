"""o200k token counts, prompt-cache rules and ``featurelens estimate``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from featurelens.core.host.protocols import LLMRequest
from featurelens.llm import request_tokens as token_count
from featurelens.llm.pricing import DEFAULT_PRICES
from featurelens.llm.prompt_cache import cached_tokens, minimum_prefix, padding_pays
from featurelens.llm.request_tokens import Counter, RequestTokens
from featurelens.scorers import SimulationScorer
from featurelens.testing.planted_features import (
    PLANTED,
    planted_records,
    write_planted_store,
)

VOCAB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "o200k_base.tiktoken"
VOCAB_CANDIDATES = [VOCAB, Path("/work/shared/data/o200k_base.tiktoken")]
TIKTOKEN_NAME = "fb374d419588a4632f3f557e76b4b70aebbca790"  # tiktoken's cache name for o200k_base


@pytest.fixture
def o200k(tmp_path, monkeypatch):
    """tiktoken's o200k vocabulary from the shared data folder, as tiktoken's own cache."""
    source = next((p for p in VOCAB_CANDIDATES if p.is_file()), None)
    if source is None:
        pytest.skip("the o200k vocabulary (shared/data/o200k_base.tiktoken) is not on this machine")
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    shutil.copy(source, cache / TIKTOKEN_NAME)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    token_count._encoding.cache_clear()
    yield Counter()
    token_count._encoding.cache_clear()


def test_o200k_counts_text_and_splits_the_shared_prefix(o200k):
    assert o200k.exact and o200k.name == "o200k_base"
    assert o200k.text("hello world") == 2
    chat = LLMRequest(messages=[{"role": "system", "content": "hello world"},
                                {"role": "user", "content": "hello world hello world"}], shared_prefix=1)
    assert o200k.request(chat) == RequestTokens(2 + 4 + 4 + 4 + 3, 2 + 4)
    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=3)[0]
    request = SimulationScorer().requests(record, PLANTED["digits"][1], frozenset({"prompt_logprobs"}))[0]
    counted = o200k.request(request)
    assert counted.prefix == o200k.text(request.prompt[:request.shared_prompt_chars]) > 100
    assert abs(counted.total - o200k.text(request.prompt)) <= 2  # split at a newline: same tokens


def test_without_tiktoken_counts_fall_back_and_say_so():
    rough = Counter(exact=False)
    assert not rough.exact and "unavailable" in rough.name
    assert rough.text("x" * 40) == 10


def test_provider_cache_minimums_and_when_padding_pays():
    assert minimum_prefix("openai", "gpt-4o-mini") == 1024
    assert minimum_prefix("anthropic", "claude-haiku-4-5") == 4096
    assert minimum_prefix("anthropic", "claude-3-5-haiku-latest") == 2048
    assert minimum_prefix("anthropic", "claude-sonnet-4-5") == 1024
    assert minimum_prefix("local", "smollm2") is None
    assert cached_tokens("openai", "gpt-4o-mini", RequestTokens(3000, 1000)) == 0
    assert cached_tokens("openai", "gpt-4o-mini", RequestTokens(3000, 1300)) == 1024 + 256
    assert cached_tokens("anthropic", "claude-haiku-4-5", RequestTokens(9000, 4000)) == 0
    assert cached_tokens("anthropic", "claude-sonnet-4-5", RequestTokens(9000, 4000)) == 4000
    mini = DEFAULT_PRICES["openai:gpt-4o-mini"]  # cached at half price: pays above 512 tokens
    assert not padding_pays("openai", "gpt-4o-mini", 320, mini).pays
    verdict = padding_pays("openai", "gpt-4o-mini", 800, mini)
    assert verdict.pays and verdict.saving_per_request == pytest.approx(800 - 512)
    haiku = DEFAULT_PRICES["anthropic:claude-haiku-4-5"]  # a tenth: pays above 410 tokens
    assert padding_pays("anthropic", "claude-haiku-4-5", 500, haiku).pays


@pytest.fixture
def planted_store(store):
    write_planted_store(store, planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=2))
    return store


def test_estimate_prints_tokens_dollars_and_wall_time(cli, planted_store, store_path, o200k):
    planted_store.close()
    result = cli("estimate", "--store", str(store_path), "--features", "1000000")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tokens counted with o200k_base" in out
    assert "openai:gpt-4o-mini" in out and "anthropic:claude-haiku-4-5" in out
    assert "score:simulation (output-logprobs)" in out and "score:simulation (json)" in out
    assert "through the batch API" in out and "per million features" in out and "wall time live" in out
    data = json.loads(cli("estimate", "--store", str(store_path), "--json", "--llm", "openai:gpt-4o-mini",
                          "--scorer", "simulation", "-s", "mode=prompt-logprobs", "-s", "adaptive=false").output)
    est = data["estimates"][0]
    assert est["features"] == est["sampled"] == 3
    explain, simulation = est["stages"]
    assert simulation["per_feature_high"]["calls"] == 4  # 100 windows, 25 per prompt
    live, batch = est["usd_live"][0], est["usd_batch"][0]
    assert batch == pytest.approx(live / 2)
    # dollars follow the counted tokens and the list price (output bounded by max_tokens)
    tokens = {k: explain["per_feature_high"][k] + simulation["per_feature_high"][k]
              for k in ("input", "cached", "output")}
    assert tokens["cached"] == 0  # every shared prefix is below OpenAI's 1,024-token minimum
    expected = 3 * (tokens["input"] * 0.15 + tokens["output"] * 0.60) / 1e6
    assert live == pytest.approx(expected)
    million = json.loads(cli("estimate", "--store", str(store_path), "--json", "--llm", "openai:gpt-4o-mini",
                             "--scorer", "simulation", "-s", "mode=prompt-logprobs", "-s", "adaptive=false",
                             "--features", "1000000").output)["estimates"][0]
    assert million["usd_live"][0] == pytest.approx(live / 3 * 1e6)


def test_adaptive_scorers_report_a_range_and_measured_outputs_replace_the_bound(cli, planted_store,
                                                                               store_path, o200k):
    planted_store.insert("llm_calls", pl.DataFrame([
        {"call_id": f"c{i}", "cache_key": f"k{i}", "provider": "openai", "model": "gpt-4o-mini",
         "purpose": "explain", "status": "ok", "output_tokens": 12, "latency_s": 0.5}
        for i in range(4)]))
    planted_store.close()
    result = cli("estimate", "--store", str(store_path), "--llm", "openai:gpt-4o-mini",
                 "--option", "features_per_request=1",  # one call a feature: the measured 12 a call
                 "-s", "adaptive=true", "-s", "round_windows=20", "--concurrency", "8")
    assert result.exit_code == 0, result.output
    explain_line = next(line for line in result.output.splitlines() if line.strip().startswith("explain "))
    assert explain_line.split()[4] == "12" and "max" not in explain_line  # measured, not "60 max"
    sim_line = next(line for line in result.output.splitlines() if "score:simulation" in line and "calls" not in line)
    assert "4.0-20.0" in sim_line  # 5 windows a prompt: a round is 4 calls, every round 20
    assert "0.5 s a call measured" in result.output


def test_estimate_refuses_bad_input_in_one_sentence(cli, planted_store, store_path, tmp_path):
    planted_store.close()
    result = cli("estimate", "--store", str(store_path), "--llm", "gpt-4o-mini")
    assert result.exit_code != 0 and "provider:model" in result.output and "Traceback" not in result.output
    result = cli("estimate", "--store", str(store_path), "--where", "nonsense_column > 1")
    assert result.exit_code != 0 and "Traceback" not in result.output
    result = cli("estimate", "--store", str(tmp_path / "missing.duckdb"))
    assert result.exit_code != 0 and "no feature store" in result.output
