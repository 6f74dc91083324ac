"""The price table: built-in prices, user overrides, and honest unknowns."""

from __future__ import annotations

import json

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.llm.pricing import ENV_PRICES, PriceTable


def test_cost_splits_fresh_cached_and_output_tokens():
    table = PriceTable.load()
    cost = table.cost("openai", "gpt-4o-mini", input_tokens=1_000_000, output_tokens=1_000_000,
                      cached_input_tokens=400_000)
    assert cost == pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.60)
    assert table.cost("openai", "gpt-4o-mini", 1_000_000, 0, batch=True) == pytest.approx(0.075)
    assert table.cost("local", "smollm2", 10**9, 10**9) == 0.0
    assert table.cost("openai", "brand-new-model", 10, 10) is None


def test_a_user_file_adds_and_replaces_prices(tmp_path, monkeypatch):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"openai:gpt-4o-mini": {"input": 1, "output": 2},
                                "openai:my-vllm": {"input": 0.01, "output": 0.02,
                                                   "cached_input": 0, "batch_discount": 1}}))
    monkeypatch.setenv(ENV_PRICES, str(path))
    table = PriceTable.load()
    assert table.cost("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.cost("openai", "my-vllm", 1_000_000, 0, batch=True) == pytest.approx(0.01)
    assert table.cost("anthropic", "claude-haiku-4-5", 1_000_000, 0) == pytest.approx(1.0)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"openai:x": {"input": "cheap"}}', "needs numbers 'input' and 'output'"),
    ('[1, 2]', "must hold a JSON object"),
])
def test_bad_price_files_are_one_sentence(tmp_path, content, message):
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(FeaturelensError, match=message):
        PriceTable.load(path)
    with pytest.raises(FeaturelensError, match="Cannot read the price file"):
        PriceTable.load(tmp_path / "missing.json")
