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
