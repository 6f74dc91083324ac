"""The model backend contract is written down: every optional member the host reads from a
backend is declared, with its default, on ``featurelens.api.ModelBackendBase``, and the
commands that edit activations load any registered backend that offers the steering members
and refuse, in one sentence, one that does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import featurelens.api as api
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import STEERING_MEMBERS, ModelBackendBase, steering_missing
from featurelens.interventions.targets import load_target
from tests.plugins.test_plugin_hooks import TinyBackend

PACKAGE = Path(__file__).resolve().parents[2] / "featurelens"
#: Where the host reads model backends.
READERS = ["core/extraction", "core/training", "core/model", "interventions", "graphs", "notebook.py",
           "scorers/intervention.py", "browser/steering_server.py"]


def _sources() -> list[Path]:
    paths: list[Path] = []
    for entry in READERS:
        path = PACKAGE / entry
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return paths


def test_the_host_reads_optional_backend_members_only_through_the_base() -> None:
    probed = re.compile(r"\b(?:getattr|hasattr)\(\s*(?:lm|backend|self\.backend|model_obj)\s*,")
    found = [f"{p.relative_to(PACKAGE)}:{n}" for p in _sources()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if probed.search(line)]
    assert found == []
    named = {name for p in _sources()
             for name in re.findall(r'declared\(\s*[\w.]+\s*,\s*"(\w+)"\s*,\s*ModelBackendBase\)',
                                    p.read_text(encoding="utf-8"))}
    assert {"backend_name", "source", "vocab_size", "check_context", "max_context", "site", "model"} <= named
    for name in named | set(STEERING_MEMBERS):
        assert name in vars(ModelBackendBase), name  # declared, with its default
    assert api.ModelBackendBase is ModelBackendBase


def test_a_backend_without_the_steering_members_is_refused_in_one_sentence() -> None:
    tiny = TinyBackend("tiny-model")
    assert steering_missing(tiny) == ["model", "site", "run_full"]
    with pytest.raises(FeaturelensError) as refused:
        load_target("identity", model="tiny-model", hookpoint="blocks.0.hook_resid_post", backend=tiny)
    message = str(refused.value)
    assert "cannot be steered" in message and "model, site, run_full" in message and "--backend hf" in message
    assert "\n" not in message


def test_a_backend_built_on_causal_lm_offers_them(tiny_backend) -> None:
    assert steering_missing(tiny_backend) == []
    assert isinstance(tiny_backend.model, torch.nn.Module)


@pytest.mark.parametrize("command", ["steer", "effects"])
def test_steering_commands_take_a_backend(cli, store_path, command) -> None:
    args = ["--prompt", "hi"] if command == "steer" else []
    result = cli(command, "--dictionary", "identity", "--hookpoint", "blocks.0.hook_resid_post", "--model",
                 "smollm2", "--backend", "nosuch", *args, "--store", store_path)
    assert result.exit_code != 0
    assert "No model backend is called 'nosuch'" in result.output and "hf" in result.output
