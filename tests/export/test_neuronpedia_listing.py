"""No folder of the Neuronpedia export holds more files than the importer lists.

Neuronpedia's admin import lists ``features``, ``activations`` and ``explanations`` with
one S3 ``ListObjectsV2`` call (``getFilesInPath`` in ``lib/utils/s3.ts``, no continuation
token): at most 1,000 keys, the first in key order. ``imported`` reads an export exactly
that way, so anything past the 1,000th file would be missing from what it returns. Tiny
batch and file sizes make a few hundred features cross the limit cheaply."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from neuronpedia_schema import validate
from synthetic_store import fill_store

import featurelens
from featurelens.export.neuronpedia import json_lines as neuronpedia_json
from featurelens.export.neuronpedia import layout as neuronpedia
from featurelens.export.neuronpedia import listing as neuronpedia_listing
from featurelens.export.runner import export

FOLDER = Path("v1") / "smollm2-135m" / "6-smollm2-l6-topk"
LISTED = {"features": "Neuron", "activations": "Activation", "explanations": "Explanation"}
NEURONPEDIA_TYPES = {"oai_token-act-pair", "eleuther_acts_top20"}


def imported(folder: Path) -> dict[str, list[str]]:
    """The rows the importer loads: per folder, the first 1,000 keys in S3's (byte) order."""
    out: dict[str, list[str]] = {}
    for name, table in LISTED.items():
        keys = sorted(p.relative_to(folder).as_posix().encode() for p in (folder / name).rglob("*")
                      if p.is_file())[:1000]
        rows: list[str] = []
        for key in keys:
            if key.endswith(b".jsonl.gz"):
                text = gzip.decompress((folder / key.decode()).read_bytes()).decode()
                rows += [json.dumps(json.loads(line), sort_keys=True) for line in text.splitlines() if line]
        out[table] = sorted(rows)
    return out


def file_counts(folder: Path) -> dict[str, int]:
    return {name: sum(1 for p in (folder / name).iterdir()) for name in
            ("features", "activations", "explanations", "explanation_scores") if (folder / name).is_dir()}


def _store(path: Path, n_features: int, **sizes: int) -> tuple[Path, dict[str, list[str]]]:
    """A store of ``n_features``, and what the importer gets from an export at the usual sizes."""
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=n_features, n_random=0, n_sequences=32, **sizes)
    usual = path.parent / "usual"
    export(path, "neuronpedia", usual)
    whole = imported(usual / FOLDER)
    assert len(whole["Neuron"]) == n_features and len(whole["Activation"]) > n_features
    return path, whole


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """60 features of 20 windows each."""
    return _store(tmp_path_factory.mktemp("narrow") / "s.duckdb", 60, n_top=10, n_quantile=10)


def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """One feature a batch (60 batches), and files so small that every window is a file of
    its own: 1,180 activation files, past one listing, unless the export caps them."""
    monkeypatch.setattr(neuronpedia, "BATCH_SIZE", 1)
    monkeypatch.setattr(neuronpedia_json, "MAX_FILE_BYTES", 300)


@pytest.fixture(scope="module")
def capped(narrow, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny export of ``narrow``, in one go."""
    output = tmp_path_factory.mktemp("capped") / "np"
    with pytest.MonkeyPatch.context() as monkeypatch:
        tiny(monkeypatch)
        export(narrow[0], "neuronpedia", output)
    return output / FOLDER


def test_tiny_files_never_put_more_than_1000_in_a_folder_and_the_import_is_complete(
        narrow, capped, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, whole = narrow
    counts = file_counts(capped)
    assert all(n <= neuronpedia_listing.LIST_LIMIT for n in counts.values()), counts
    # 59 live features, each batch's 20 windows cut into at most 1000 // 60 = 16 files
    assert counts["features"] == 60 and counts["activations"] == 59 * 16, counts
    assert imported(capped) == whole  # every row the usual export carries, none lost to the listing
    assert validate(capped, NEURONPEDIA_TYPES) == []

    # The same export without the cap: the folder passes the listing and the import loses rows.
    tiny(monkeypatch)
    monkeypatch.setattr(neuronpedia_listing, "files_per_batch", lambda n_batches: 10**6)
    export(path, "neuronpedia", tmp_path / "uncapped")
    uncapped = tmp_path / "uncapped" / FOLDER
    assert file_counts(uncapped)["activations"] == 59 * 20
    assert len(imported(uncapped)["Activation"]) < len(whole["Activation"])


@pytest.mark.slow  # 550 batches; the activations test above crosses the listing in the fast suite
def test_more_than_1000_feature_batches_become_fewer_larger_ones(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path, whole = _store(tmp_path / "s.duckdb", 1100, n_top=2, n_quantile=1)
    monkeypatch.setattr(neuronpedia, "BATCH_SIZE", 1)  # 1,100 feature files: past one listing
    monkeypatch.setattr(neuronpedia_json, "MAX_FILE_BYTES", 700)
    summary = export(path, "neuronpedia", tmp_path / "tiny")
    folder = tmp_path / "tiny" / FOLDER
    counts = file_counts(folder)
    assert counts["features"] == 550 and counts["activations"] == 550, counts  # two features a batch
    assert "1100 features in 550 batch files" in summary
    assert imported(folder) == whole
    assert validate(folder, NEURONPEDIA_TYPES) == []


def test_a_million_latents_fit_one_listing() -> None:
    """A 2**20-latent SAE at 1,000 features a batch would be 1,049 files; 1,049 a batch is 1,000."""
    size = neuronpedia_listing.batch_size(2**20, neuronpedia.BATCH_SIZE)
    assert size == 1049 and -(-2**20 // size) == 1000
    assert neuronpedia_listing.batch_size(1000 * 1000, neuronpedia.BATCH_SIZE) == 1000
    assert neuronpedia_listing.files_per_batch(1000) == 1 and neuronpedia_listing.files_per_batch(7) == 142


def test_batches_under_the_limit_keep_the_usual_file_size(narrow, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, whole = narrow
    monkeypatch.setattr(neuronpedia, "BATCH_SIZE", 10)  # 6 batches: up to 166 files each
    monkeypatch.setattr(neuronpedia_json, "MAX_FILE_BYTES", 4096)
    export(path, "neuronpedia", tmp_path / "cut")
    folder = tmp_path / "cut" / FOLDER
    pieces = sorted((folder / "activations").iterdir())
    assert 6 < len(pieces) <= neuronpedia_listing.LIST_LIMIT
    for piece in pieces:
        assert len(gzip.decompress(piece.read_bytes())) <= 4096
    assert imported(folder) == whole


def test_a_batch_too_large_for_its_share_of_the_listing_is_refused_in_one_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=8)
    monkeypatch.setattr(neuronpedia_listing, "LIST_LIMIT", 4)  # 4 batches of 2, one file each
    monkeypatch.setattr(neuronpedia, "BATCH_SIZE", 1)
    monkeypatch.setattr(neuronpedia_json, "MAX_FILE_BYTES", 500)
    monkeypatch.setattr(neuronpedia_listing, "MOST_FILE_BYTES", 1000)
    result = cli("export", "--format", "neuronpedia", "--output", tmp_path / "np", "--store", path)
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "Traceback" not in result.output, result.output
    assert "activations/batch-00000.jsonl.gz holds" in error and "at most 1,000 bytes" in error
    assert "lists only the first 4 files of a folder" in error and "--where" in error
    assert not (tmp_path / "np").exists()  # nothing published for a partial import


def test_a_resumed_export_cuts_the_batches_the_same_way(narrow, capped, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tiny(monkeypatch)
    real = neuronpedia._write_batch
    calls = {"n": 0}

    def dies_at_the_tenth(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(neuronpedia, "_write_batch", dies_at_the_tenth)
    with pytest.raises(KeyboardInterrupt):
        export(narrow[0], "neuronpedia", tmp_path / "resumed")
    assert (tmp_path / "resumed.partial").is_dir()
    monkeypatch.setattr(neuronpedia, "_write_batch", real)
    export(narrow[0], "neuronpedia", tmp_path / "resumed")

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.jsonl.gz")}

    assert files(tmp_path / "resumed" / FOLDER) == files(capped)
