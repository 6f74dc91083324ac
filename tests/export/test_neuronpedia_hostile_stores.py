"""Hostile stores through the Neuronpedia export, read the way its importer reads them.

``lib/db/import.ts`` replaces the six characters ``\\u0000`` with a space, splits the
decompressed file on newlines and parses each line (``JSON.parse`` / ``jsonb``, neither
of which knows ``NaN`` or ``Infinity``); ``importer_lines`` does the same here, strictly.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from neuronpedia_schema import load_source_folder, validate
from synthetic_store import fill_store

import featurelens
from featurelens.export.neuronpedia import json_lines as neuronpedia_json
from featurelens.export.runner import export

FOLDER = Path("v1") / "smollm2-135m" / "6-smollm2-l6-topk"
NEURONPEDIA_TYPES = {"oai_token-act-pair", "eleuther_acts_top20"}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def importer_lines(path: Path) -> list[dict[str, Any]]:
    """The rows Neuronpedia's importer gets from one ``.jsonl.gz`` file (raises where it would fail)."""
    text = gzip.decompress(path.read_bytes()).decode("utf-8").replace("\\u0000", " ")
    return [json.loads(line, parse_constant=_no_constants) for line in text.strip().split("\n") if line.strip()]


def _every_file(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl.gz"))


def _store(tmp_path: Path, n_features: int = 8) -> Path:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=n_features)
    return path


def test_non_finite_numbers_become_json_the_importer_parses(tmp_path: Path) -> None:
    path = _store(tmp_path)
    with featurelens.open_store(path) as store:
        store.execute("UPDATE examples SET activations = list_concat(activations[1:13], "
                      "['nan'::FLOAT, 'inf'::FLOAT, '-inf'::FLOAT]) WHERE feature = 2 AND kind = 'top' AND rank = 0")
        store.execute("UPDATE examples SET max_activation = 'inf' WHERE feature = 2 AND kind = 'quantile'")
        store.execute("UPDATE features SET max_activation = 'inf', density = 'nan', "
                      "histogram_edges = ['-inf'::DOUBLE, 1.0, 'inf'::DOUBLE] WHERE feature = 4")
        store.execute("UPDATE scores SET score = 'nan' WHERE feature = 5")
    export(path, "neuronpedia", tmp_path / "np")
    folder = tmp_path / "np" / FOLDER
    for f in _every_file(folder):
        importer_lines(f)  # NaN / Infinity would raise here
    assert validate(folder, NEURONPEDIA_TYPES) == []
    t = load_source_folder(folder)
    top = next(a for a in t["Activation"] if a["index"] == "2" and a["binMin"] == -1.0
               and a["values"][-3:] != [0.0, 0.0, 0.0] and len(a["values"]) == 16)
    assert top["values"][-3:] == [0.0, neuronpedia_json.FLOAT32_MAX, -neuronpedia_json.FLOAT32_MAX]
    n4 = next(n for n in t["Neuron"] if n["index"] == "4")
    assert n4["maxActApprox"] == neuronpedia_json.FLOAT32_MAX and n4["frac_nonzero"] == 0.0
    # A NaN score is no score: ExplanationScore.value is NOT NULL and must be a number.
    explanation_ids = {e["id"] for e in t["Explanation"] if e["index"] == "5"}
    assert not [s for s in t.get("ExplanationScore", []) if s["explanationId"] in explanation_ids]


def test_a_backslash_u0000_token_survives_the_importers_nul_replacement(tmp_path: Path) -> None:
    path = _store(tmp_path, n_features=4)
    tokens = ["a\\u0000b", "\\", "\\\\u0000", "\u2028", "\x1b[31m", "\r", "tab\t"]
    with featurelens.open_store(path) as store:
        store.execute("UPDATE sequences SET token_strs = list_concat(?, token_strs[8:])", [tokens])
        store.execute("UPDATE explanations SET text = 'path C:\\u0000\\x' WHERE feature = 1")
    export(path, "neuronpedia", tmp_path / "np")
    folder = tmp_path / "np" / FOLDER
    rows = {f.parent.name: importer_lines(f) for f in _every_file(folder)}
    windows = [a["tokens"] for a in rows["activations"]]
    assert any(w[:7] == tokens for w in windows)
    assert "path C:\\u0000\\x" in {e["description"] for e in rows["explanations"]}


def test_large_batches_are_cut_into_files_the_importer_can_hold(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _store(tmp_path, n_features=12)
    export(path, "neuronpedia", tmp_path / "whole")
    monkeypatch.setattr(neuronpedia_json, "MAX_FILE_BYTES", 4096)
    export(path, "neuronpedia", tmp_path / "cut")
    whole, cut = tmp_path / "whole" / FOLDER, tmp_path / "cut" / FOLDER
    pieces = sorted((cut / "activations").glob("*.jsonl.gz"))
    assert len(pieces) > 3
    for piece in pieces:
        text = gzip.decompress(piece.read_bytes())
        assert len(text) <= 4096 or text.count(b"\n") == 1
    assert validate(cut, NEURONPEDIA_TYPES) == []
    def canonical(folder: Path) -> dict[str, list[str]]:
        return {table: sorted(json.dumps(r, sort_keys=True) for r in rows)
                for table, rows in load_source_folder(folder).items()}

    assert canonical(cut) == canonical(whole)


def test_long_and_unicode_names_fit_neuronpedias_id_rules(tmp_path: Path) -> None:
    """Model ids match ``^[a-zA-Z0-9-_]+$`` with at most 128 characters (schema.prisma's
    zod rule); the source id stays ``<layer>-<sourceSetName>`` without the ``__`` delimiter."""
    path = tmp_path / "s.duckdb"
    long_model = "org/" + "very-long-model-name_" * 20
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=3, dictionary_id="données__" + "ü" * 200)
        store.execute("UPDATE models SET model_id = ?", [long_model])
        store.execute("UPDATE dictionaries SET model_id = ?", [long_model])
        store.execute("UPDATE sequences SET model_id = ?", [long_model])
    export(path, "neuronpedia", tmp_path / "np")
    [model_dir] = [p for p in (tmp_path / "np" / "v1").iterdir() if p.is_dir() and p.name != "config"]
    [folder] = list(model_dir.iterdir())
    assert re.fullmatch(r"[a-z0-9_-]{1,128}", model_dir.name)
    assert len(folder.name) <= 128 and "__" not in folder.name
    assert validate(folder, NEURONPEDIA_TYPES) == []
