"""`featurelens train --executor ray|processes|torchrun` on a tiny model: the same weights as
an in-process run with the same global batch; Ray stays out of the default path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from featurelens.core.dictionaries.loading import load_dictionary
from featurelens.core.host import manager as plugins
from featurelens.core.training import checkpoints

HOOK = "blocks.0.hook_resid_post"
ROOT = Path(__file__).resolve().parents[3]


def args(model: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(model), "--hookpoint", HOOK, "--output", str(output), "--expansion", "4",
            "--k", "4", "--tokens", "1536", "--batch-size", "128", "--context", "32", "--buffer-rows", "512",
            "--lr", "0.003", "--device", "cpu", "--name", "tiny-dp", *extra]


def invoke(argv: list[str]):
    from featurelens.cli import make_cli

    return CliRunner().invoke(make_cli(plugins.get_host()), argv)


def weights(path: Path, backend) -> dict[str, torch.Tensor]:
    return load_dictionary(str(path), backend=backend, hookpoint=HOOK).state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.fixture(scope="module")
def in_process(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inprocess") / "sae"
    torch.set_num_threads(1)
    result = invoke(args(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_ray_two_workers_match_in_process(in_process: Path, tiny_model_dir: Path, tiny_backend,
                                          tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "sae"
    result = invoke(args(tiny_model_dir, out, "--executor", "ray", "--workers", "2"))
    assert result.exit_code == 0, result.output
    assert "Trained topk" in result.output
    assert_same(weights(out, tiny_backend), weights(in_process, tiny_backend))
    assert not (tmp_path / ".sae.training").exists()


@pytest.mark.slow
def test_ray_worker_error_is_one_sentence(tmp_path: Path) -> None:
    """An option only the workers check (k above d_sae) comes back as its sentence."""
    pytest.importorskip("ray")
    from featurelens.core.errors import FeaturelensError
    from featurelens.core.training import TensorSource, TrainConfig
    from featurelens.core.training.data_parallel import DataParallelRunner

    bad = TrainConfig(architecture="topk", d_sae=16, options={"k": 99}, tokens=128, batch_size=64)
    with pytest.raises(FeaturelensError) as caught:
        DataParallelRunner(2, "ray")(TensorSource(torch.randn(256, 8)), bad, checkpoint_dir=tmp_path / "x",
                                     progress=False)
    message = str(caught.value)
    assert "k" in message and "Traceback" not in message and "\n" not in message


@pytest.mark.slow
def test_processes_resume_a_killed_run(in_process: Path, tiny_model_dir: Path, tiny_backend,
                                       tmp_path: Path) -> None:
    """The 2-process run resumes from an in-process checkpoint (taken at step 4 of 12 by a
    run that was then stopped) and ends where the uninterrupted run ended."""
    from featurelens.core.training import (
        ModelSource,
        TrainConfig,
        checkpoint_dir_for,
        run_training,
    )
    from featurelens.core.training.api import train_dictionary

    out = tmp_path / "sae"

    def stop(step: int, metrics: dict) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_dictionary(backend=tiny_backend, hookpoint=HOOK, output=out, expansion=4, k=4, tokens=1536,
                         batch_size=128, context=32, buffer_rows=512, lr=0.003, device="cpu",
                         dictionary_id="tiny-dp", checkpoint_steps=4, progress=False, callback=stop)
    assert (checkpoint_dir_for(out) / checkpoints.FILE).is_file()
    result = invoke(args(tiny_model_dir, out, "--executor", "processes", "--workers", "2"))
    assert result.exit_code == 0, result.output
    assert "resumed at step 4" in result.output
    assert_same(weights(out, tiny_backend), weights(in_process, tiny_backend))


@pytest.mark.slow
def test_torchrun_two_ranks_match_in_process(in_process: Path, tiny_model_dir: Path, tiny_backend,
                                             tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "sae"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "featurelens",
                           *args(tiny_model_dir, out, "--executor", "torchrun")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("Trained topk") == 1  # rank 0 reports; rank 1 says nothing
    assert_same(weights(out, tiny_backend), weights(in_process, tiny_backend))


def test_executor_options_are_one_sentence(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = invoke(args(tiny_model_dir, tmp_path / "a", "--address", "auto"))
    assert result.exit_code != 0 and "--address needs --executor ray" in result.output
    result = invoke(args(tiny_model_dir, tmp_path / "b", "--executor", "processes",
                                          "--workers", "0"))
    assert result.exit_code != 0 and "--workers must be a positive integer" in result.output
    assert "Traceback" not in result.output


