"""No featurelens code unpickles: a store or a checkpoint can never run code.

The source scan fails if anyone reintroduces an unpickling call; the checkpoint tests
show a hostile resume file and a path-escaping checkpoint name are refused in one
sentence without running anything.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction import resume
from featurelens.core.extraction.state import ExtractionState, Settings

ROOT = Path(featurelens.__file__).resolve().parent.parent
#: Calls that turn bytes into arbitrary objects (and so can run code), and torch.load at
#: all: even weights_only=True runs an unpickler (featurelens reads torch archives with
#: core/torch_archive.py and writes checkpoints as safetensors + JSON).
FORBIDDEN = [
    re.compile(r"weights_only\s*=\s*False"),
    re.compile(r"\bpickle\.loads?\s*\("),
    re.compile(r"\b(?:c?Pickle|_pickle)\.Unpickler\b|\bUnpickler\s*\("),
    re.compile(r"allow_pickle\s*=\s*True"),
    re.compile(r"\bread_pickle\s*\("),
    re.compile(r"^\s*(?:import|from)\s+(?:dill|cloudpickle|joblib|pickle|_pickle|cPickle)\b", re.M),
    re.compile(r"\bmarshal\.loads?\s*\("),
    re.compile(r"\btorch\.load\s*\("),
]


def _sources() -> list[Path]:
    folders = [ROOT / "featurelens", ROOT / "benchmarks", ROOT / "scripts", ROOT / "examples"]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.py"))


def test_no_source_file_unpickles():
    offenders = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for pattern in FORBIDDEN:
            offenders += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    assert len(_sources()) > 50  # the scan really looked at the package
    assert offenders == []


def test_scan_catches_each_forbidden_call():
    """The patterns match the calls they exist for (a scan that matches nothing proves nothing)."""
    samples = ["torch.load(f, weights_only=False)", "pickle.load(handle)", "pickle.loads(b)",
               "np.load(p, allow_pickle=True)", "pd.read_pickle(p)", "import dill", "marshal.loads(b)",
               "torch.load(path, weights_only=True)", "import pickle", "from pickle import loads"]
    for sample in samples:
        assert any(p.search(sample) for p in FORBIDDEN), sample


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _plant_pickle(path: Path, marker: Path) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"stats": _Payload(marker)}, handle)


def test_old_pickled_checkpoint_is_refused_unopened(tmp_path: Path):
    """A ``state-NNNNNNNNN.pt`` an earlier version wrote is refused by name: one sentence
    telling the user to restart the job, and the pickle's code never runs."""
    folder = tmp_path / "run"
    folder.mkdir()
    marker = tmp_path / "pwned"
    _plant_pickle(folder / "state-000000001.pt", marker)
    with pytest.raises(FeaturelensError) as caught:
        resume.load_checkpoint(folder, "state-000000001.pt", torch.device("cpu"))
    assert not marker.exists()
    message = str(caught.value)
    assert "pickle format" in message and "restart this extraction" in message and str(folder) in message
    assert "\n" not in message
    # once the folder is gone (what the sentence asks), the run simply starts over
    (folder / "state-000000001.pt").unlink()
    assert resume.load_checkpoint(folder, "state-000000001.pt", torch.device("cpu")) is None


@pytest.mark.parametrize("planted", ["manifest", "tensors"])
def test_pickle_planted_as_a_checkpoint_file_is_refused_without_running(tmp_path: Path, planted: str):
    """A pickle put in place of the manifest or of the tensor file it names is refused in
    one sentence; neither JSON nor safetensors reading can run it."""
    state = ExtractionState(12, 8, Settings(), torch.device("cpu"))
    name = resume.save_checkpoint(tmp_path, 3, state.state_dict())
    marker = tmp_path / "pwned"
    target = tmp_path / name if planted == "manifest" else next(tmp_path.glob("state-*.safetensors"))
    _plant_pickle(target, marker)
    with pytest.raises(FeaturelensError) as caught:
        resume.load_checkpoint(tmp_path, name, torch.device("cpu"))
    assert not marker.exists()
    assert "is not one featurelens wrote for this run" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["/etc/passwd", "../state-000000001.json", "state-000000001.json/../x",
                                  "other.json", "", "state-1.json", "state-000000001.safetensors", 7])
def test_checkpoint_names_stay_in_the_run_folder(tmp_path: Path, name: str):
    outside = tmp_path / "state-000000001.json"
    outside.write_text("{}")
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(FeaturelensError, match="not a featurelens checkpoint file name"):
        resume.load_checkpoint(folder, name, torch.device("cpu"))


def test_real_checkpoint_round_trips_without_pickle(tmp_path: Path):
    state = ExtractionState(12, 8, Settings(), torch.device("cpu"))
    state.stats.n_tokens = 1234
    state.stats.fire_count[3] = 9
    name = resume.save_checkpoint(tmp_path, 3, state.state_dict())
    assert name == "state-000000003.json"
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".safetensors"}
    template = ExtractionState(12, 8, Settings(), torch.device("cpu")).state_dict()
    loaded = resume.load_checkpoint(tmp_path, name, torch.device("cpu"), template=template)
    again = ExtractionState(12, 8, Settings(), torch.device("cpu"))
    again.load_state_dict(loaded)
    assert again.stats.n_tokens == 1234
    assert torch.equal(again.stats.fire_count, state.stats.fire_count)
    assert torch.equal(again.top.score, state.top.score)


def test_checkpoint_of_another_width_is_refused_before_loading(tmp_path: Path):
    """The fresh state's shapes are checked against the file's declared ones first."""
    name = resume.save_checkpoint(tmp_path, 3, ExtractionState(12, 8, Settings(), torch.device("cpu")).state_dict())
    template = ExtractionState(16, 8, Settings(), torch.device("cpu")).state_dict()
    with pytest.raises(FeaturelensError, match=r"has shape \[12\], expected \[16\]"):
        resume.load_checkpoint(tmp_path, name, torch.device("cpu"), template=template)


def test_prune_keeps_the_named_checkpoint_and_its_tensor_file(tmp_path: Path):
    state = ExtractionState(12, 8, Settings(), torch.device("cpu")).state_dict()
    old = resume.save_checkpoint(tmp_path, 1, state)
    new = resume.save_checkpoint(tmp_path, 2, state)
    resume.prune_checkpoints(tmp_path, new)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[1] == new and names[0].startswith("state-000000002.")
    assert not (tmp_path / old).exists()
    assert resume.load_checkpoint(tmp_path, new, torch.device("cpu")) is not None


def test_rerun_of_extract_with_a_hostile_runs_row(tmp_path: Path, tiny_model_dir: Path):
    """The reported attack end to end: runs.progress names a pickle or a file outside the
    run folder; rerunning extract refuses it in one sentence and nothing runs."""
    import json

    from extract_calls import extract_with

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat. " * 100, encoding="utf-8")
    store = tmp_path / "s.duckdb"
    kwargs = dict(model=str(tiny_model_dir), hookpoint="blocks.1.hook_resid_post", corpus=str(corpus),
                  tokens=64, context=16, batch_size=2, store=store, progress=False, device="cpu")
    result = extract_with(**kwargs)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    _plant_pickle(evil, marker)
    folder = resume.checkpoint_dir(store, result.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state-000000001.pt").write_bytes(evil.read_bytes())
    (folder / "state-000000001.json").write_bytes(evil.read_bytes())
    for name, message in ((str(evil), "not a featurelens checkpoint file name"),
                          ("state-000000001.pt", "pickle format"),
                          ("state-000000001.json", "is not one featurelens wrote")):
        with featurelens.open_store(store) as db:
            db.execute("UPDATE runs SET status = 'running', progress = ? WHERE run_id = ?",
                       [json.dumps({"batches_done": 1, "checkpoint": name, "seq_floor": 0}), result.run_id])
        with pytest.raises(FeaturelensError, match=message):
            extract_with(**kwargs)
        assert not marker.exists()
