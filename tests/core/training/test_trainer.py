"""The trainer: it learns, streams through a shuffle buffer, resumes after kill -9 to the
same result, stops cleanly on NaN, and refuses a mismatched checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from featurelens.core.errors import FeaturelensError
from featurelens.core.training import (
    ShuffleBuffer,
    TensorSource,
    checkpoint_dir_for,
    checkpoints,
    train_on_tensors,
)
from featurelens.plugins.formats.saelens import SAELensFormat


def sparse_data(n: int = 6000, d: int = 16, n_true: int = 48, seed: int = 0) -> torch.Tensor:
    """Rows that really are sparse sums of a few directions (a dictionary can be found)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_true, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    codes = (torch.rand(n, n_true, generator=g) < 0.06).float() * (torch.rand(n, n_true, generator=g) * 3 + 0.5)
    return codes @ dirs + 0.02 * torch.randn(n, d, generator=g) + 1.0


pytestmark = pytest.mark.usefixtures("one_thread")


COMMON = dict(architecture="topk", d_sae=64, options={"k": 4}, tokens=24_000, batch_size=256,
              lr=3e-3, buffer_rows=2048, progress=False, device="cpu")


def test_shuffle_buffer_draws_every_row_once() -> None:
    buffer = ShuffleBuffer(100, 1, seed=0)
    buffer.add(torch.arange(60.0)[:, None])
    first = buffer.take(25)
    assert buffer.needs_refill()
    buffer.add(torch.arange(60.0, 90.0)[:, None])
    rest = buffer.take(1000)
    seen = torch.cat([first, rest]).flatten().sort().values
    assert torch.equal(seen, torch.arange(90.0))
    assert not torch.equal(first.flatten(), torch.arange(25.0))  # shuffled, not in order


def test_topk_learns_a_sparse_dictionary(tmp_path: Path) -> None:
    x = sparse_data()
    fvus: list[float] = []
    result = train_on_tensors(x, output=tmp_path / "sae", callback=lambda step, m: fvus.append(m["fvu"]),
                              **COMMON)
    assert result.tokens == 24_000 and result.steps == 94
    assert fvus[-1] < 0.35 * fvus[0]
    assert result.metrics["l0"] <= 4
    loaded = SAELensFormat().load(str(tmp_path / "sae"))
    assert torch.allclose(loaded.encode(x[:50]), result.dictionary.encode(x[:50]), atol=1e-5)
    assert not checkpoint_dir_for(tmp_path / "sae").exists()  # cleaned up after the final save
    # running again finds the finished output and does not retrain
    again = train_on_tensors(x, output=tmp_path / "sae", **COMMON)
    assert torch.equal(again.dictionary.W_enc, loaded.W_enc) and again.already_done
    with pytest.raises(FeaturelensError, match="trained with other options"):
        train_on_tensors(x, output=tmp_path / "sae", **dict(COMMON, options={"k": 3}))


def test_transcoder_with_skip_learns_a_map(tmp_path: Path) -> None:
    x = sparse_data(d=12)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(12, 8, generator=g)
    y = torch.relu(x @ w) + 0.5 * x[:, :8]
    options = dict(COMMON, architecture="transcoder", options={"k": 6, "skip": True})
    fvus: list[float] = []
    result = train_on_tensors(x, targets=y, output=tmp_path / "tc", callback=lambda s, m: fvus.append(m["fvu"]),
                              **options)
    assert result.dictionary.d_out == 8 and result.dictionary.W_skip is not None
    assert fvus[-1] < 0.5 * fvus[0]
    assert (tmp_path / "tc" / "featurelens_dictionary.json").is_file()  # SAELens has no TopK transcoder


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    result = train_on_tensors(sparse_data(), output=tmp_path / "bf", bf16=True, **dict(COMMON, tokens=4096))
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())


def test_nan_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    x = sparse_data()
    x[5000:] = float("nan")  # the source turns bad after the first ~5000 rows
    out = tmp_path / "nan"
    with pytest.raises(FeaturelensError, match=r"diverged at step \d+: the loss is NaN.*last good checkpoint"):
        train_on_tensors(x, output=out, checkpoint_steps=1, **dict(COMMON, buffer_rows=512))
    state = checkpoints.load(checkpoint_dir_for(out))
    assert state is not None and state["step"] >= 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not out.exists()


def test_checkpoint_from_other_options_is_refused(tmp_path: Path) -> None:
    x = sparse_data()
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        def stop(step: int, metrics: dict) -> None:
            if step == 3:
                raise KeyboardInterrupt
        train_on_tensors(x, output=out, checkpoint_steps=1, callback=stop, **COMMON)
    with pytest.raises(FeaturelensError, match="made with other options"):
        train_on_tensors(x, output=out, **dict(COMMON, options={"k": 5}))


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FeaturelensError, match="non-empty \\[n, d\\] matrix"):
        TensorSource(torch.zeros(0, 4))
    with pytest.raises(FeaturelensError, match="No dictionary learner is called 'nope'"):
        train_on_tensors(sparse_data(), output=tmp_path / "a", **dict(COMMON, architecture="nope"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "other.txt").write_text("x")
    with pytest.raises(FeaturelensError, match="already exists and is not a finished training output"):
        train_on_tensors(sparse_data(), output=tmp_path / "b", **COMMON)
    with pytest.raises(FeaturelensError, match="batch_size must be a positive integer"):
        train_on_tensors(sparse_data(), output=tmp_path / "c", **dict(COMMON, batch_size=0))


SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from tests.core.training.test_trainer import COMMON, sparse_data
    from featurelens.core.training import train_on_tensors
    slow = sys.argv[2] == "slow"
    r = train_on_tensors(sparse_data(), output=sys.argv[1], checkpoint_steps=5,
                         callback=(lambda s, m: time.sleep(0.05)) if slow else None, **COMMON)
    from safetensors.torch import save_file
    save_file({{"W_enc": r.dictionary.W_enc.detach().contiguous(), "resumed": torch.tensor(r.resumed_from_step),
               "tokens": torch.tensor(r.tokens)}}, sys.argv[1] + ".result.safetensors")
""")


def _run(script: Path, out: Path, mode: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(out), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_resume_after_kill_9_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).resolve().parents[3])))
    victim = _run(script, tmp_path / "killed", "slow")
    state_file = checkpoint_dir_for(tmp_path / "killed") / checkpoints.FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # the writer may replace the checkpoint between our reading its two files
            if state_file.exists() and checkpoints.load(state_file.parent)["step"] >= 10:
                break
        except FeaturelensError:
            pass
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed").exists()  # no half-written output
    resumed = _run(script, tmp_path / "killed", "fast")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    reference = train_on_tensors(sparse_data(), output=tmp_path / "ref", **COMMON)
    got = load_file(str(tmp_path / "killed") + ".result.safetensors")
    assert int(got["resumed"]) >= 10 and reference.resumed_from_step == 0
    assert int(got["tokens"]) == reference.tokens == 24_000
    assert torch.allclose(got["W_enc"], reference.dictionary.W_enc, atol=1e-6)


@pytest.mark.parametrize("architecture, options", [
    ("batchtopk", {"k": 4}), ("relu", {"l1_coefficient": 0.05}),
    ("jumprelu", {"l0_coefficient": 0.01, "bandwidth": 0.1, "initial_threshold": 0.05}),
])
def test_other_learners_learn(tmp_path: Path, architecture: str, options: dict) -> None:
    fvus: list[float] = []
    result = train_on_tensors(sparse_data(), output=tmp_path / architecture,
                              callback=lambda step, m: fvus.append(m["fvu"]),
                              **dict(COMMON, architecture=architecture, options=options, tokens=12_000))
    assert fvus[-1] < 0.5 * fvus[0], (fvus[0], fvus[-1])
    assert 0 < result.metrics["l0"] < 64
    if architecture == "batchtopk":
        assert float(result.dictionary.threshold) > 0


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_old_pickled_training_checkpoint_is_refused_unopened(tmp_path: Path) -> None:
    """A ``state.pt`` an earlier version wrote: one sentence telling the user to restart the
    run, and the pickle's code never runs; a damaged manifest is one sentence too."""
    import pickle

    folder = tmp_path / "ckpt"
    folder.mkdir()
    marker = tmp_path / "pwned"
    (folder / checkpoints.PICKLED).write_bytes(pickle.dumps({"model": _Payload(marker)}))
    with pytest.raises(FeaturelensError) as caught:
        checkpoints.load(folder)
    message = str(caught.value)
    assert "pickle format" in message and "restart this training run" in message and "\n" not in message
    assert not marker.exists()
    (folder / checkpoints.PICKLED).unlink()
    checkpoints.save(folder, {"step": 3, "x": torch.ones(2)})
    assert checkpoints.load(folder)["step"] == 3
    (folder / checkpoints.FILE).write_text("{not json")
    with pytest.raises(FeaturelensError, match="cannot be read .its manifest is not JSON.; delete the folder"):
        checkpoints.load(folder)
    checkpoints.remove(folder)
    assert not folder.exists()
