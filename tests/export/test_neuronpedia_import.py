"""The Neuronpedia export is the folder its admin import reads, checked by a validator
built from Neuronpedia's schema.prisma (tests/neuronpedia_schema.py): every key a column,
every NOT NULL column filled, types right, keys consistent across files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
from neuronpedia_schema import check_rows, load_source_folder, validate
from synthetic_store import explanation_text, fill_store

import featurelens
from featurelens.export.runner import export

#: Explanation types Neuronpedia has (its autointerp code and explanation-type pages).
NEURONPEDIA_TYPES = {"oai_token-act-pair", "eleuther_acts_top20"}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("np") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=30)
        with store.transaction():  # one undefined score: it has no place in ExplanationScore
            store.insert("scores", pa.table({
                "score_id": ["undefined-1"], "explanation_id": [store.sql(
                    "SELECT explanation_id FROM explanations WHERE feature = 5")["explanation_id"][0]],
                "dictionary_id": ["smollm2-l6-topk"], "feature": [5], "scorer": ["detection"],
                "llm": ["openai:gpt-4o-mini"], "score": pa.array([None], pa.float64()),
                "status": ["undefined"]}))
    return path


def test_layout_validates_against_the_schema(filled: Path, tmp_path: Path) -> None:
    export(filled, "neuronpedia", tmp_path / "np")
    folder = tmp_path / "np" / "v1" / "smollm2-135m" / "6-smollm2-l6-topk"
    assert sorted(p.name for p in folder.iterdir()) == [
        "activations", "explanation_scores", "explanations", "features",
        "model.jsonl", "release.jsonl", "replace.sql", "source.jsonl", "sourceset.jsonl"]
    # The importer reads config from v1/config only, five files, all required.
    assert sorted(p.name for p in (tmp_path / "np" / "v1" / "config").iterdir()) == [
        "eval_type.jsonl", "explanation_model_type.jsonl", "explanation_score_model.jsonl",
        "explanation_score_type.jsonl", "explanation_type.jsonl"]
    assert validate(folder) == []
    t = load_source_folder(folder)
    assert [n["index"] for n in t["Neuron"]] == [str(i) for i in range(30)]
    assert t["Source"][0]["setName"] == t["SourceSet"][0]["name"] == "smollm2-l6-topk"
    # Public by default: Neuronpedia lists only public rows or the signed-in user's own.
    for table in ("SourceRelease", "Model", "SourceSet", "Source"):
        assert t[table][0]["visibility"] == "PUBLIC"
    assert 'DELETE FROM "Source" WHERE "modelId" = \'smollm2-135m\' AND "id" = \'6-smollm2-l6-topk\'' in (
        folder / "replace.sql").read_text()


def test_rows_carry_the_store(filled: Path, tmp_path: Path) -> None:
    export(filled, "neuronpedia", tmp_path / "np")
    t = load_source_folder(tmp_path / "np" / "v1" / "smollm2-135m" / "6-smollm2-l6-topk")
    with featurelens.open_store(filled, read_only=True) as store:
        stats = store.sql("SELECT * FROM features WHERE feature = 2").row(0, named=True)
        top = store.sql("SELECT x.activations, x.max_activation, x.max_position, s.token_strs FROM examples x "
                        "JOIN sequences s USING (corpus_id, sequence_id) WHERE x.feature = 2 AND x.kind = 'top' "
                        "ORDER BY x.rank").to_dicts()
        quantile = store.sql("SELECT quantile, max_activation FROM examples WHERE feature = 2 "
                             "AND kind = 'quantile'").to_dicts()
        n_quantile_all = store.sql("SELECT count(*) AS n FROM examples WHERE kind = 'quantile'")["n"][0]
        n_ok = store.sql("SELECT count(*) AS n FROM scores WHERE status = 'ok'")["n"][0]
    n2 = next(n for n in t["Neuron"] if n["index"] == "2")
    assert n2["maxActApprox"] == pytest.approx(stats["max_activation"], abs=1e-3)
    assert n2["frac_nonzero"] == pytest.approx(stats["density"], abs=1e-3)
    assert n2["pos_str"] == stats["top_logits"] and n2["freq_hist_data_bar_heights"] == stats["histogram_counts"]
    acts = [a for a in t["Activation"] if a["index"] == "2"]
    assert len(acts) == len(top) + len(quantile)
    first = acts[0]
    assert first["tokens"] == top[0]["token_strs"]
    assert first["values"] == pytest.approx(top[0]["activations"], abs=1e-3)
    assert first["maxValueTokenIndex"] == top[0]["max_position"]
    # Top windows: SAEDashboard's bin fields (-1, the feature's max, -1).
    assert (first["binMin"], first["binContains"]) == (-1.0, -1.0)
    assert first["binMax"] == pytest.approx(stats["max_activation"], abs=1e-3)
    # Every stored quantile window is exported (none dropped by rank), each in the
    # equal-width interval of linspace(0, max, 11) its maximum falls in, and binContains is
    # that interval's share of all activating tokens, from the stored histogram.
    assert sum(1 for a in t["Activation"] if a["binContains"] >= 0) == n_quantile_all
    top_max = stats["max_activation"]
    width = top_max / 10
    edges, counts = stats["histogram_edges"], stats["histogram_counts"]
    for a in acts[len(top):]:
        i = round(a["binMin"] / width)
        assert a["binMin"] == pytest.approx(i * width, abs=1e-3)
        assert a["binMax"] == pytest.approx((i + 1) * width, abs=1e-3)
        assert a["binMin"] - 1e-3 <= a["maxValue"] <= a["binMax"] + 1e-3
        lo, hi = i * width, (i + 1) * width
        expected = sum(n * max(0.0, min(b, hi) - max(x, lo)) / (b - x)
                       for x, b, n in zip(edges, edges[1:], counts) if b > x) / sum(counts)
        assert a["binContains"] == pytest.approx(expected, abs=1e-5)
    shares = {round(a["binMin"], 3): a["binContains"] for a in t["Activation"] if a["index"] == "2" and a["binContains"] >= 0}
    assert sum(shares.values()) <= 1 + 1e-6
    e2 = [e for e in t["Explanation"] if e["index"] == "2"]
    assert e2[0]["description"] == explanation_text(2) and e2[0]["explanationModelName"] == "smollm2"
    assert "embedding" not in e2[0]  # only with --embeddings openai
    assert len(t["ExplanationScore"]) == n_ok  # the undefined detection score is left out
    assert {s["explanationScoreTypeName"] for s in t["ExplanationScore"]} == {"featurelens_simulation"}


def test_validator_catches_what_the_importer_would_refuse() -> None:
    """The validator fails on the faults that made the old export unloadable."""
    good = {"id": "c1", "modelId": "m", "layer": "6-s", "index": "1", "tokens": ["a"], "values": [1.0],
            "maxValue": 1.0, "maxValueTokenIndex": 0, "minValue": 1.0, "creatorId": "u"}
    assert check_rows("Activation", [good], "a") == []
    assert any("not a column" in p for p in check_rows("Activation", [{**good, "quantile": 3}], "a"))
    assert any("NOT NULL" in p for p in check_rows("Activation", [{k: v for k, v in good.items() if k != "id"}], "a"))
    assert any("is not a String" in p for p in check_rows("Activation", [{**good, "index": 1}], "a"))
    assert any("keys differ" in p for p in check_rows("Activation", [good, {**good, "binMin": -1.0}], "a"))
    assert check_rows("Activation", [], "a")


def test_keys_must_agree_across_files(filled: Path, tmp_path: Path) -> None:
    export(filled, "neuronpedia", tmp_path / "np", where="feature < 4")
    folder = tmp_path / "np" / "v1" / "smollm2-135m" / "6-smollm2-l6-topk"
    assert validate(folder, NEURONPEDIA_TYPES) == []
    (folder / "source.jsonl").write_text(json.dumps({
        **json.loads((folder / "source.jsonl").read_text()), "setName": "other"}) + "\n")
    assert any("has no source set other" in p for p in validate(folder, NEURONPEDIA_TYPES))


def test_unknown_explainers_get_config_rows(tmp_path: Path) -> None:
    """An explainer Neuronpedia lacks is typed featurelens_<name> and defined in config/."""
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=3)
    export(path, "neuronpedia", tmp_path / "np")
    folder = tmp_path / "np" / "v1" / "smollm2-135m" / "6-smollm2-l6-topk"
    with gzip.open(folder / "explanations" / "batch-00000.jsonl.gz", "rt") as handle:
        types = {json.loads(line)["typeName"] for line in handle}
    assert types == {"featurelens_default", "featurelens_contrastive"}
    defined = {json.loads(line)["name"] for line in (folder.parent.parent / "config" / "explanation_type.jsonl").open()}
    assert defined == types
    assert validate(folder) == []
