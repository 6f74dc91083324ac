"""kill -9 at any moment, rerun the same command: the store equals an uninterrupted run's."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from extract_calls import extract_with

import featurelens
from featurelens.core.extraction.state import ExtractionState

SCRIPT = '''
import sys, torch
from featurelens.core.dictionaries.base import Dictionary
from featurelens.core.extraction import ExtractSpec, extract

class Sparse(Dictionary):
    architecture = "testsparse"
    def __init__(self):
        super().__init__(32, 24)
        g = torch.Generator().manual_seed(1)
        self.W = torch.nn.Parameter(torch.randn(32, 24, generator=g))
        self.b = torch.nn.Parameter(torch.linspace(-0.15, -0.45, 24))
    def encode(self, x):
        return torch.relu(x @ self.W + self.b)
    def decode(self, f):
        return f @ self.W.T
    def decoder_directions(self):
        return self.W.T.detach()

model, corpus, store = sys.argv[1:4]
spec = ExtractSpec(model=model, hookpoint="blocks.1.hook_resid_post", corpus=corpus, split="all",
                   tokens=40 * 16, batch_size=1, context=16, top_k=4, n_quantile=6,
                   quantile_bins_count=3, n_random=5, device="cpu")
result = extract(spec, store=store, progress=False, checkpoint_every=1, dictionary_obj=Sparse())
print("resumed_from", result.resumed_from, "done", result.already_done)
'''

TABLES = {
    "features": "SELECT * FROM features ORDER BY feature",
    "examples": "SELECT * FROM examples ORDER BY feature, kind, rank",
    "sequences": "SELECT * FROM sequences ORDER BY sequence_id",
    "dictionaries": "SELECT * EXCLUDE (created_at) FROM dictionaries",
    "runs": "SELECT run_id, status, config FROM runs",
}


def _run(script: Path, args: list[str], kill_after_checkpoints: int | None = None) -> subprocess.CompletedProcess | None:
    command = [sys.executable, str(script), *args]
    if kill_after_checkpoints is None:
        return subprocess.run(command, check=True, capture_output=True, text=True)
    store = Path(args[2])
    folder = store.parent / f".{store.name}.extract"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        states = sorted(folder.glob("*/state-*.json")) if folder.exists() else []
        if states and int(states[-1].stem.split("-")[1]) >= kill_after_checkpoints:
            break
        time.sleep(0.005)
    time.sleep(random.Random(kill_after_checkpoints).uniform(0, 0.05))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return None


def _tables(store: Path) -> dict:
    with featurelens.open_store(store, read_only=True) as db:
        return {name: db.sql(query) for name, query in TABLES.items()}


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_store(tiny_model_dir: Path, tmp_path: Path) -> None:
    from featurelens.testing import SAMPLE_TEXT

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{i}: {SAMPLE_TEXT[i % 4]}" for i in range(200)), encoding="utf-8")
    script = tmp_path / "job.py"
    script.write_text(SCRIPT, encoding="utf-8")
    clean = tmp_path / "clean.duckdb"
    _run(script, [str(tiny_model_dir), str(corpus), str(clean)])

    killed = tmp_path / "killed.duckdb"
    args = [str(tiny_model_dir), str(corpus), str(killed)]
    _run(script, args, kill_after_checkpoints=5)
    with featurelens.open_store(killed, read_only=True) as db:  # killed mid-run: some shards committed
        assert db.execute("SELECT status FROM runs")[0][0] == "running"
        assert 0 < db.execute("SELECT count(*) FROM sequences")[0][0] < 40
        assert db.execute("SELECT count(*) FROM features")[0][0] == 0
    _run(script, args, kill_after_checkpoints=20)
    finished = _run(script, args)
    assert "resumed_from 0 " not in finished.stdout
    expected, actual = _tables(clean), _tables(killed)
    for name in TABLES:
        assert actual[name].equals(expected[name]), f"{name} differs after resuming"
    assert expected["examples"].filter(kind="random").height > 0
    assert expected["examples"].filter(kind="quantile").height > 0
    assert not (tmp_path / ".killed.duckdb.extract").exists()


def test_interrupted_in_process_resumes_to_the_same_store(tiny_model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast version of the kill test: interrupt after N batches, at several N."""
    from featurelens.plugins.hf_backend import HFBackend
    from featurelens.testing import SAMPLE_TEXT

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{i}: {SAMPLE_TEXT[i % 4]}" for i in range(80)), encoding="utf-8")
    backend = HFBackend(str(tiny_model_dir), device="cpu")
    from featurelens.core.extraction import extractor as pipeline

    monkeypatch.setattr(pipeline, "SEQUENCE_FLUSH", 3)  # sequences also flushed between checkpoints
    kwargs = dict(hookpoint="blocks.0.hook_resid_post", corpus=str(corpus), split="all", tokens=24 * 16,
                  batch_size=2, context=16, top_k=3, n_quantile=4, n_random=3, progress=False,
                  checkpoint_every=3, model_obj=backend)
    extract_with(store=tmp_path / "clean.duckdb", **kwargs)
    original = ExtractionState.accumulate
    for stop_after in (4, 7):
        calls = {"n": 0}

        def accumulate(self, *args, _limit=stop_after, _calls=calls, **kw):
            _calls["n"] += 1
            if _calls["n"] > _limit:
                raise KeyboardInterrupt
            return original(self, *args, **kw)

        monkeypatch.setattr(ExtractionState, "accumulate", accumulate)
        with pytest.raises(KeyboardInterrupt):
            extract_with(store=tmp_path / "cut.duckdb", **kwargs)
    monkeypatch.setattr(ExtractionState, "accumulate", original)
    result = extract_with(store=tmp_path / "cut.duckdb", **kwargs)
    assert result.resumed_from == 9  # 3 from the first cut, up to 9 in the second
    expected, actual = _tables(tmp_path / "clean.duckdb"), _tables(tmp_path / "cut.duckdb")
    for name in TABLES:
        assert actual[name].equals(expected[name]), f"{name} differs after resuming"
