"""Bad inputs end in one sentence: one line on stderr, no traceback, a non-zero exit
status, and a store that is byte-for-byte what it was before the command."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from llm_fixtures import fill

import featurelens
from featurelens.core.host import manager as plugins
from featurelens.plugins.formats.native import MANIFEST, save_native

HOOK = "blocks.1.hook_resid_post"
D_MODEL = 32  # the tiny Llama's width


def _corpus(tmp: Path) -> Path:
    path = tmp / "corpus.txt"
    path.write_text("The cat sat on the mat. " * 200, encoding="utf-8")
    return path


def _extract(tmp: Path, model: Path, dictionary: Path | str, corpus: Path | None = None) -> list[str]:
    return ["extract", "--model", str(model), "--hookpoint", HOOK, "--dictionary", str(dictionary),
            "--corpus", str(corpus or _corpus(tmp)), "--tokens", "64", "--context", "16"]


def _dictionary_learning_topk(tmp: Path, k: object) -> Path:
    folder = tmp / "dl"
    folder.mkdir()
    torch.save({"encoder.weight": torch.randn(64, D_MODEL), "encoder.bias": torch.zeros(64),
                "decoder.weight": torch.randn(D_MODEL, 64), "b_dec": torch.zeros(D_MODEL)}, folder / "ae.pt")
    trainer = {"dict_class": "AutoEncoderTopK", "activation_dim": D_MODEL, "dict_size": 64}
    if k is not None:
        trainer["k"] = k
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    return folder


def _gemma_strings(tmp: Path) -> Path:
    np.savez(tmp / "params.npz", W_enc=np.array([["a", "b"], ["c", "d"]]), b_enc=np.zeros(2, np.float32))
    return tmp / "params.npz"


def _gemma_huge_header(tmp: Path) -> Path:
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 1_000_000)}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("W_enc.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64)
    (tmp / "params.npz").write_bytes(buffer.getvalue())
    return tmp / "params.npz"


def _native(tmp: Path, **changes: object) -> Path:
    from featurelens.core.host.manager import create

    folder = tmp / "native"
    save_native(create("dictionary_learner", "topk", D_MODEL, 64, k=4), folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def _nan_saelens(tmp: Path) -> Path:
    from safetensors.torch import save_file

    folder = tmp / "sae"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": D_MODEL, "d_sae": 64,
                                                 "normalize_activations": "none"}))
    w_enc = torch.randn(D_MODEL, 64)
    w_enc[0, 0] = float("nan")
    save_file({"W_enc": w_enc, "b_enc": torch.zeros(64), "W_dec": torch.randn(64, D_MODEL),
               "b_dec": torch.zeros(D_MODEL)}, str(folder / "sae_weights.safetensors"))
    return folder


def _junk_parquet(tmp: Path) -> Path:
    path = tmp / "corpus.parquet"
    path.write_bytes(b"PAR1" + os.urandom(2048) + b"PAR1")
    return path


def _view_reading_a_file(tmp: Path, store: Path) -> None:
    (tmp / "outside.csv").write_text("x\n1\n")
    with featurelens.open_store(store) as db:
        db.execute("CREATE TABLE explanations_kept AS SELECT * FROM explanations")
        db.execute("DROP TABLE explanations CASCADE")
        db.execute(f"CREATE VIEW explanations AS SELECT e.* FROM explanations_kept e, "
                   f"read_csv('{tmp / 'outside.csv'}')")


Case = Callable[[Path, Path, Path], list[str]]

#: name -> (arguments given (tmp, tiny model, store), words the one line must contain)
CASES: dict[str, tuple[Case, str]] = {
    "dictionary_learning topk without k": (
        lambda t, m, s: _extract(t, m, _dictionary_learning_topk(t, None)), "without a positive integer k"),
    "dictionary_learning topk k not an integer": (
        lambda t, m, s: _extract(t, m, _dictionary_learning_topk(t, "thirty-two")), "positive integer k"),
    "gemma scope npz with a string array": (
        lambda t, m, s: _extract(t, m, _gemma_strings(t)), "not floating-point weights"),
    "gemma scope npz header claiming 1e6 x 1e6": (
        lambda t, m, s: _extract(t, m, _gemma_huge_header(t)), "claims W_enc [1000000, 1000000]"),
    "native config d_in='eight'": (
        lambda t, m, s: _extract(t, m, _native(t, d_in="eight")), "d_in='eight'; it must be a positive integer"),
    "native config d_sae=30000000 over small weights": (
        lambda t, m, s: _extract(t, m, _native(t, d_sae=30_000_000)), "needs at least 960000000 weights"),
    "NaN weights": (lambda t, m, s: _extract(t, m, _nan_saelens(t)), "NaN or infinite values"),
    "junk parquet corpus": (
        lambda t, m, s: _extract(t, m, "identity", _junk_parquet(t)), "is not a readable Parquet file"),
    "export over a store whose view reads a file": (
        lambda t, m, s: (_view_reading_a_file(t, s), ["export", "--format", "html", "--output",
                                                      str(t / "report")])[1], "view that reads files"),
    "sql COPY without --write": (
        lambda t, m, s: ["sql", f"COPY features TO '{t / 'x.csv'}'"], "without --write"),
}


def _messages(stderr: str) -> list[str]:
    """stderr's lines, progress bars (model loading shows one) left out."""
    lines = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [line for line in lines if line.strip() and not re.search(r"\d+%\|.*\|", line)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def filled_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill(store, 4)
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_sentence_and_changes_nothing(name: str, tmp_path: Path, tiny_model_dir: Path,
                                                       filled_store: Path):
    make_args, words = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    args = make_args(work, tiny_model_dir, filled_store) + ["--store", str(filled_store)]
    before = _digest(filled_store)
    plugins.reset_host()
    result = CliRunner().invoke(featurelens_cli(), args)
    assert isinstance(result.exception, SystemExit), (name, result.exception, result.output)
    assert result.exit_code != 0
    lines = _messages(result.stderr)
    assert len(lines) == 1, (name, result.stderr)
    assert lines[0].startswith("Error: ") and words in lines[0], (name, lines[0])
    assert "Traceback" not in result.output
    assert _digest(filled_store) == before


def featurelens_cli():
    from featurelens.cli import make_cli

    return make_cli(plugins.get_host())


def _file_size_limit(limit: int) -> Callable[[], None]:
    """For the child: writes past ``limit`` bytes fail (EFBIG), as on a full disk."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


def test_disk_full_at_commit(filled_store: Path):
    """A write that fails at COMMIT: one sentence saying the disk is full, store unchanged."""
    before = _digest(filled_store)
    command = [sys.executable, "-m", "featurelens", "sql", "--write", "--store", str(filled_store),
               "CREATE TABLE big AS SELECT range AS x, repeat('y', 200) || range AS s FROM range(100000)"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300,
                         preexec_fn=_file_size_limit(filled_store.stat().st_size))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "is full" in lines[0] and "Traceback" not in out.stderr and "Fix the SQL" not in lines[0]
    assert _digest(filled_store) == before
    wal = filled_store.with_name(filled_store.name + ".wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with featurelens.open_store(filled_store, read_only=True) as store:
        assert "big" not in store.tables()


DISK_FULL_JOB = """
import sys
import polars as pl
import featurelens
from featurelens.core.errors import StoreError
store = featurelens.open_store(sys.argv[1])
rows = pl.DataFrame({"stage": ["explain"] * 60000, "dictionary_id": ["d1"] * 60000,
                     "feature": list(range(60000)), "reason": ["x" * 300] * 60000})
try:
    with store.transaction():
        store.insert("failures", rows)
except StoreError as error:
    print(error)
"""


def test_disk_full_inside_a_job_transaction(filled_store: Path):
    before = _digest(filled_store)
    out = subprocess.run([sys.executable, "-c", DISK_FULL_JOB, str(filled_store)], capture_output=True,
                         text=True, timeout=300, preexec_fn=_file_size_limit(filled_store.stat().st_size))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "is full" in out.stdout and "run the same command again" in out.stdout
    assert _digest(filled_store) == before
