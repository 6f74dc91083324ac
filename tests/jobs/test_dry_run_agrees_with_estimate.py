"""``explain --dry-run`` and ``estimate`` plan the same job with one counter and one price rule,
so they print the same input tokens and the same cost for it."""

from __future__ import annotations

import json
import re

import pytest
from llm_fixtures import fill

import featurelens


@pytest.mark.parametrize("llm", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
def test_dry_run_and_estimate_print_the_same_tokens_and_cost(cli, store_path, llm):
    with featurelens.open_store(store_path) as store:
        fill(store, 30, n_sequences=32)
    dry = cli("explain", "--llm", llm, "--dry-run", "--store", store_path)
    assert dry.exit_code == 0, dry.output
    estimated = cli("estimate", "--llm", llm, "--scorer", "none", "--json", "--store", store_path)
    assert estimated.exit_code == 0, estimated.output
    [est] = json.loads(estimated.output)["estimates"]
    [explain] = est["stages"]
    assert est["features"] == est["sampled"] == 30 and explain["features_per_request"] == 4

    def number(label: str) -> str:
        return re.search(rf"{label}:\s+(?:at most )?([\d,]+)", dry.output).group(1).replace(",", "")

    assert int(number("LLM calls")) == round(explain["per_feature_high"]["calls"] * 30) == 8  # 30 / 4
    assert int(number("input tokens")) == round(explain["per_feature_high"]["input"] * 30)
    assert int(number("output tokens")) == round(explain["per_feature_high"]["output"] * 30)
    cost = re.search(r"estimated cost:\s+\$([\d.,]+)", dry.output).group(1)
    assert cost == f"{est['usd_live'][0]:,.4f}"
    assert est["tokenizer"] in dry.output  # counted with the same counter, said the same way


@pytest.mark.parametrize("options", [(), ("--option", "features_per_request=1")])
def test_they_agree_on_a_selection_with_dead_features(cli, store_path, options):
    """Features that never fired are no work for either: the dry run leaves them out, and the
    estimate, planning the same jobs, prices the same calls and tokens for the selection."""
    with featurelens.open_store(store_path) as store:
        fill(store, 30, n_sequences=32)
        store.execute("UPDATE features SET fire_count = 0 WHERE feature % 3 = 0")
        store.execute("DELETE FROM examples WHERE feature % 3 = 0")
    llm = "openai:gpt-4o-mini"
    dry = cli("explain", "--llm", llm, *options, "--dry-run", "--store", store_path)
    assert dry.exit_code == 0, dry.output
    estimated = cli("estimate", "--llm", llm, *options, "--scorer", "none", "--json", "--store", store_path)
    assert estimated.exit_code == 0, estimated.output
    [est] = json.loads(estimated.output)["estimates"]
    [explain] = est["stages"]

    def number(label: str) -> int:
        return int(re.search(rf"{label}:\s+(?:at most )?([\d,]+)", dry.output).group(1).replace(",", ""))

    assert number("features to label") == 20
    total = {name: round(value * est["sampled"]) for name, value in explain["per_feature_high"].items()}
    assert number("LLM calls") == total["calls"] > 0
    assert number("input tokens") == total["input"]
    assert number("output tokens") == total["output"]
    cost = re.search(r"estimated cost:\s+\$([\d.,]+)", dry.output).group(1)
    assert cost == f"{est['usd_live'][0]:,.4f}"


def test_they_plan_the_same_features_of_a_larger_selection(cli, store_path):
    """Both plan the same features: every one up to the planner's sample size (an estimate that
    priced only its first 200 and scaled them up printed other tokens than the dry run)."""
    with featurelens.open_store(store_path) as store:
        fill(store, 260, n_sequences=64)
    llm = "openai:gpt-4o-mini"
    dry = cli("explain", "--llm", llm, "--dry-run", "--store", store_path)
    assert dry.exit_code == 0, dry.output
    estimated = cli("estimate", "--llm", llm, "--scorer", "none", "--json", "--store", store_path)
    assert estimated.exit_code == 0, estimated.output
    [est] = json.loads(estimated.output)["estimates"]
    assert est["sampled"] == est["features"] == 260
    [explain] = est["stages"]
    total = {name: round(value * 260) for name, value in explain["per_feature_high"].items()}
    calls = re.search(r"LLM calls:\s+([\d,]+)", dry.output).group(1).replace(",", "")
    tokens = re.search(r"input tokens:\s+([\d,]+)", dry.output).group(1).replace(",", "")
    assert int(calls) == total["calls"] == 64 + 1  # 256 features a chunk in groups of 4, then 4
    assert int(tokens) == total["input"]
    assert re.search(r"estimated cost:\s+\$([\d.,]+)", dry.output).group(1) == f"{est['usd_live'][0]:,.4f}"
