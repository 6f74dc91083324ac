"""Data-parallel training (gloo, 2 local processes) follows a 1-worker run with the same
global batch: same weights to float tolerance, dead features and AuxK included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.training import (
    TensorSource,
    TrainConfig,
    run_training,
    train_on_tensors,
)
from featurelens.core.training.data_parallel import DataParallelRunner
from featurelens.core.training.distributed import DataParallel
from featurelens.core.training import checkpoints


def data(rows: int = 768, width: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(rows, width, generator=generator) * torch.linspace(0.5, 2.0, width)


def config(architecture: str = "topk", **options) -> TrainConfig:
    # dead_after_tokens small: features go dead within a few steps and AuxK runs
    return TrainConfig(architecture=architecture, d_sae=256, options=options, tokens=96 * 14, batch_size=96,
                       buffer_rows=384, dead_after_tokens=96, seed=1, lr=3e-3, warmup_steps=2)


def single(cfg: TrainConfig, folder: Path, dead: list | None = None) -> object:
    record = (lambda step, metrics: dead.append(metrics["dead_fraction"])) if dead is not None else None
    return run_training(TensorSource(data(), chunk_rows=64), cfg, checkpoint_dir=folder, progress=False,
                        checkpoint_steps=1000, callback=record).dictionary


def assert_close(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-4, atol=1e-5, msg=key)


def test_slices_cover_the_batch_once() -> None:
    for world in (1, 2, 3, 5):
        for rows in (1, 4, 96, 97):
            cuts = [DataParallel(rank, world).bounds(rows) for rank in range(world)]
            assert cuts[0][0] == 0 and cuts[-1][1] == rows
            assert all(cuts[i][1] == cuts[i + 1][0] for i in range(world - 1))
            assert max(b - a for a, b in cuts) - min(b - a for a, b in cuts) <= 1


@pytest.mark.parametrize("architecture,options", [
    ("topk", {"k": 2}), pytest.param("relu", {}, marks=pytest.mark.slow),
    pytest.param("batchtopk", {"k": 4}, marks=pytest.mark.slow),
    pytest.param("jumprelu", {}, marks=pytest.mark.slow)])
def test_two_workers_match_one(tmp_path: Path, one_thread, architecture: str, options: dict) -> None:
    dead: list[float] = []
    cfg = config(architecture, **options)
    expected = single(cfg, tmp_path / "one", dead)
    runner = DataParallelRunner(2, "processes")
    got = runner(TensorSource(data(), chunk_rows=64), cfg, checkpoint_dir=tmp_path / "two",
                 progress=False, checkpoint_steps=1000)
    assert got.steps == 14 and got.tokens == 96 * 14
    assert_close(got.dictionary, expected)
    if architecture in ("topk", "batchtopk"):  # k of 256 per token: features go dead and AuxK runs
        assert max(dead) > 0


@pytest.mark.slow
def test_resume_across_executors(tmp_path: Path, one_thread) -> None:
    """A 1-worker run killed after its step-5 checkpoint, finished on 2 workers, equals an
    uninterrupted run."""
    cfg = config("topk", k=4)
    expected = single(cfg, tmp_path / "whole")

    def stop(step: int, metrics: dict) -> None:
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(TensorSource(data(), chunk_rows=64), cfg, checkpoint_dir=tmp_path / "run",
                     progress=False, checkpoint_steps=5, callback=stop)
    got = DataParallelRunner(2, "processes")(TensorSource(data(), chunk_rows=64), cfg,
                                             checkpoint_dir=tmp_path / "run", progress=False,
                                             checkpoint_steps=5)
    assert got.resumed_from_step == 5
    assert_close(got.dictionary, expected)


@pytest.mark.slow
def test_train_on_tensors_saves_and_reruns(tmp_path: Path, one_thread) -> None:
    out = tmp_path / "sae"
    kwargs = dict(architecture="topk", d_sae=32, options={"k": 4}, tokens=96 * 4, batch_size=96,
                  buffer_rows=384, progress=False, device="cpu")
    first = train_on_tensors(data(), output=out, runner=DataParallelRunner(2, "processes"), **kwargs)
    assert (out / "training.json").is_file() and not first.already_done
    assert not (tmp_path / ".sae.training").exists()  # checkpoint and shared tensors cleaned up
    again = train_on_tensors(data(), output=out, runner=DataParallelRunner(2, "processes"), **kwargs)
    assert again.already_done


def test_bad_options_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(FeaturelensError, match="--workers must be a positive integer"):
        DataParallelRunner(0, "processes")
    with pytest.raises(FeaturelensError, match="Unknown training executor"):
        DataParallelRunner(2, "mpi")
    with pytest.raises(FeaturelensError, match="--address names a Ray cluster"):
        DataParallelRunner(2, "processes", address="auto")
    with pytest.raises(FeaturelensError, match="runs under torchrun"):
        DataParallelRunner(2, "torchrun")(TensorSource(data()), config(), checkpoint_dir=tmp_path / "x",
                                          progress=False)


@pytest.mark.slow
def test_worker_error_reaches_the_driver(tmp_path: Path) -> None:
    """A bad option seen in the workers comes back as its one sentence."""
    bad = TrainConfig(architecture="topk", d_sae=32, options={"k": 99}, tokens=192, batch_size=96)
    with pytest.raises(FeaturelensError) as caught:
        DataParallelRunner(2, "processes")(TensorSource(data()), bad, checkpoint_dir=tmp_path / "x",
                                           progress=False)
    assert "Traceback" not in str(caught.value) and "k" in str(caught.value)


KILL_SCRIPT = """
import sys
from pathlib import Path
import torch
from featurelens.core.errors import FeaturelensError
from featurelens.core.training import TensorSource, TrainConfig
from featurelens.core.training.data_parallel import DataParallelRunner
data = torch.randn(768, 8, generator=torch.Generator().manual_seed(3))
config = TrainConfig(architecture="topk", d_sae=256, options={"k": 2}, tokens=96 * 400, batch_size=96,
                     buffer_rows=384, seed=1, lr=3e-3)
try:
    result = DataParallelRunner(2, "processes")(TensorSource(data, chunk_rows=64), config,
                                        checkpoint_dir=Path(sys.argv[1]), progress=False, checkpoint_steps=2)
except FeaturelensError as error:
    print("ERROR:", error)
    raise SystemExit(3)
print("DONE", result.resumed_from_step)
"""


@pytest.mark.slow
def test_killed_worker_is_one_sentence_and_the_rerun_resumes(tmp_path: Path) -> None:
    """SIGKILL to a worker mid-run: the driver says so in one sentence, and the same
    command resumes from rank 0's last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (folder / checkpoints.FILE).is_file():
        assert driver.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    children = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(driver.pid)], capture_output=True,
                              text=True)
    workers = [int(line.split()[0]) for line in children.stdout.splitlines() if "spawn_main" in line]
    assert workers, "no worker processes found"
    os.kill(workers[-1], signal.SIGKILL)
    out, err = driver.communicate(timeout=240)
    assert driver.returncode == 3, err[-2000:]
    line = out.strip().splitlines()[-1]
    assert "was killed (signal 9)" in line and "run the same command again" in line
    rerun = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(folder)], env=env, capture_output=True,
                           text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    done, resumed = rerun.stdout.strip().splitlines()[-1].split()
    assert done == "DONE" and int(resumed) >= 2  # from rank 0's checkpoint, not from scratch
