"""Hostile ``featurelens steer`` arguments: one sentence, exit status 1, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

HOOK = "blocks.0.hook_resid_post"


@pytest.mark.parametrize("feature,prompt,needle", [
    ("0=+1e308", "The quick", "use a smaller strength"),
    ("0=clamp:1e308", "The quick", "use a smaller strength"),
    ("9" * 5000 + "=+1", "The quick", "is not a feature number"),
    ("1=" + "9" * 5000, "The quick", "is not a number"),
    ("0=+8", "a" * 100_000, "but the model reads at most"),
])
def test_hostile_steer_arguments(cli, tiny_model_dir: Path, tmp_path: Path, one_thread,
                                 feature: str, prompt: str, needle: str) -> None:
    result = cli("steer", "--model", tiny_model_dir, "--dictionary", "identity", "--hookpoint", HOOK,
                 "--store", tmp_path / "s.duckdb", "--device", "cpu", "--max-tokens", 3, "--temperature", 0,
                 "--feature", feature, "--prompt", prompt)
    assert result.exit_code == 1, result.output[-500:]
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: ") and needle in error and len(error) < 400


@pytest.mark.parametrize("option,value", [("--seed", str(10**25)), ("--temperature", "nan"),
                                          ("--temperature", "1e309")])
def test_seed_and_temperature_out_of_range_are_usage_errors(cli, tiny_model_dir: Path, tmp_path: Path,
                                                            option: str, value: str) -> None:
    """click's FloatRange lets nan and inf through, and torch.manual_seed overflows past 64 bits."""
    result = cli("steer", "--model", tiny_model_dir, "--dictionary", "identity", "--hookpoint", HOOK,
                 "--store", tmp_path / "s.duckdb", "--device", "cpu", "--max-tokens", 2,
                 "--feature", "0=+1", "--prompt", "The quick", option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
