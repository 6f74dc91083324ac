"""No third-party progress bars in featurelens's output: transformers draws "Loading
weights" while a model loads; our loads run inside quiet_loading(), and steer says
"no change" instead of listing tokens moved by +0.0000."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelens.core.model.quiet import quiet_loading
from featurelens.interventions.generate import SteerResult, format_side_by_side


def test_model_loads_draw_no_bars(tiny_model_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as tf_logging

    AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # the library on its own: a bar
    assert "Loading weights" in capfd.readouterr().err
    from featurelens.core.host.manager import create

    create("model_backend", "hf", str(tiny_model_dir), dtype="float32", device="cpu")
    with quiet_loading():
        AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert "Loading weights" not in capfd.readouterr().err
    assert tf_logging.is_progress_bar_enabled()  # the caller's setting is restored


def test_steer_says_no_change() -> None:
    same = SteerResult("I think", ["the same"], ["the same"], ["feature 3 +0"], [])
    text = format_side_by_side(same)
    assert "no change" in text and "every steered continuation equals its baseline" in text
    assert "+0.0000" not in text
    moved = SteerResult("I think", ["a"], ["b"], ["feature 3 +8"],
                        [{"token": " cat", "token_id": 1, "p_baseline": 0.1, "p_steered": 0.3, "delta": 0.2}])
    assert "no change" not in format_side_by_side(moved) and "+0.2000" in format_side_by_side(moved)
