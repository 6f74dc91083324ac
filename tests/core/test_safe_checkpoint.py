"""Checkpoints as safetensors + JSON: exact round trips, atomic replacement, and every
foreign or damaged file refused before anything is allocated."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from featurelens.core import safe_checkpoint
from featurelens.core.safe_checkpoint import Invalid


def tree() -> dict:
    shared = torch.arange(6, dtype=torch.float32)
    return {
        "model": {"W": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.bfloat16)},
        "optimizer": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(3, 4)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "fused": None, "amsgrad": False,
                                        "params": [0], "eps": float("inf")}]},
        "rng": torch.get_rng_state(), "empty": torch.empty(0, 5, dtype=torch.long),
        "same": shared, "view": shared[2:4], "flag": torch.tensor([True, False]),
        "nan": float("nan"), "$odd": "a key that looks like a tag", "step": 12, "key": "abc",
    }


def test_round_trip_is_exact(tmp_path: Path) -> None:
    saved = tree()
    safe_checkpoint.save(tmp_path, "ckpt", saved)
    got = safe_checkpoint.load(tmp_path, "ckpt")
    assert got.keys() == saved.keys()
    for key in ("rng", "empty", "same", "view", "flag"):
        assert got[key].dtype == saved[key].dtype and torch.equal(got[key], saved[key]), key
    assert torch.equal(got["model"]["W"], saved["model"]["W"]) and got["model"]["b"].dtype == torch.bfloat16
    assert list(got["optimizer"]["state"]) == [0]  # integer keys stay integers
    group = got["optimizer"]["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and group["fused"] is None and group["amsgrad"] is False
    assert math.isinf(group["eps"]) and math.isnan(got["nan"])
    assert got["$odd"] == saved["$odd"] and got["step"] == 12 and got["key"] == "abc"
    manifest = json.loads((tmp_path / "ckpt.json").read_text())
    assert manifest["format"] == safe_checkpoint.FORMAT  # plain JSON, tensors by reference only


def test_replacing_keeps_one_tensor_file(tmp_path: Path) -> None:
    for step in range(3):
        safe_checkpoint.save(tmp_path, "state", {"step": step, "x": torch.full((4,), float(step))})
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".safetensors"]
    assert safe_checkpoint.load(tmp_path, "state")["step"] == 2
    safe_checkpoint.remove(tmp_path, "state")
    assert list(tmp_path.iterdir()) == []


def test_a_crash_before_the_manifest_rename_leaves_the_old_checkpoint(tmp_path: Path, monkeypatch) -> None:
    safe_checkpoint.save(tmp_path, "state", {"step": 1, "x": torch.ones(4)})
    real = os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt  # the process dies between the two renames
        real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        safe_checkpoint.save(tmp_path, "state", {"step": 2, "x": torch.full((4,), 2.0)})
    monkeypatch.setattr(os, "replace", real)
    got = safe_checkpoint.load(tmp_path, "state")
    assert got["step"] == 1 and torch.equal(got["x"], torch.ones(4))


WRITER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from featurelens.core import safe_checkpoint
    folder = Path(sys.argv[1])
    for step in range(10**6):
        safe_checkpoint.save(folder, "state", {"step": step, "x": torch.full((256, 256), float(step))})
        print(step, flush=True)
""")


def test_kill_9_at_any_moment_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    """A writer replacing its checkpoint as fast as it can, killed at random moments: every
    time, what is on disk loads and its counter matches its tensor."""
    rng = random.Random(0)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for attempt in range(2):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env,
                                  stdout=subprocess.PIPE, text=True)
        first = writer.stdout.readline()  # one checkpoint is complete
        assert first, "the writer wrote nothing"
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        got = safe_checkpoint.load(tmp_path, "state")
        assert torch.equal(got["x"], torch.full((256, 256), float(got["step"]))), attempt


def _saved(tmp_path: Path) -> tuple[dict, Path]:
    safe_checkpoint.save(tmp_path, "state", {"step": 1, "x": torch.ones(8, 2)})
    manifest = json.loads((tmp_path / "state.json").read_text())
    return manifest, tmp_path / manifest["tensors"]


def _rewrite(tmp_path: Path, manifest: dict) -> None:
    (tmp_path / "state.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, reason", [
    (lambda m, t, d: (d / "state.json").write_text("not json"), "not JSON"),
    (lambda m, t, d: (d / "state.json").write_text('{"format": "other"}'), "not a featurelens checkpoint"),
    (lambda m, t, d: _rewrite(d, {**m, "version": 99}), "version 99"),
    (lambda m, t, d: _rewrite(d, {**m, "tensors": "../../etc/passwd"}), "names no tensor file"),
    (lambda m, t, d: t.unlink(), "is missing"),
    (lambda m, t, d: t.write_bytes(t.read_bytes()[:-8]), "bytes, the manifest says"),
    (lambda m, t, d: _rewrite(d, {**m, "bytes": 10}), "bytes, the manifest says"),
    (lambda m, t, d: _rewrite(d, {**m, "tree": {"x": {**m["tree"]["x"], "shape": [4, 4]}}}),
     "does not hold the tensors its manifest names"),
    (lambda m, t, d: _rewrite(d, {**m, "tree": {"x": {**m["tree"]["x"], "dtype": "F64"}}}),
     "does not hold the tensors its manifest names"),
    (lambda m, t, d: _rewrite(d, {**m, "tree": {"x": {**m["tree"]["x"], "shape": [-1]}}}), "malformed"),
    (lambda m, t, d: t.write_bytes(b"\xff" * 8 + t.read_bytes()[8:]), "not valid safetensors"),
])
def test_damaged_or_foreign_files_are_refused(tmp_path: Path, damage, reason: str) -> None:
    manifest, tensors = _saved(tmp_path)
    damage(manifest, tensors, tmp_path)
    with pytest.raises(Invalid, match=reason):
        safe_checkpoint.load(tmp_path, "state")


def test_template_fixes_shapes_and_kinds_before_loading(tmp_path: Path) -> None:
    safe_checkpoint.save(tmp_path, "state", {"x": torch.ones(8, 2), "pool": torch.zeros(5, 3)})
    assert safe_checkpoint.load(tmp_path, "state", template={"x": torch.zeros(8, 2), "pool": torch.zeros(0, 3)})
    for template, reason in (({"x": torch.zeros(9, 2)}, r"shape \[8, 2\], expected \[9, 2\]"),
                             ({"x": torch.zeros(8, 2, dtype=torch.long)}, "is F32, not I64"),
                             ({"pool": torch.zeros(0, 4)}, r"shape \[5, 3\], expected \[0, 4\]"),
                             ({"y": torch.zeros(1)}, "has no tensor y")):
        with pytest.raises(Invalid, match=reason):
            safe_checkpoint.load(tmp_path, "state", template=template)
