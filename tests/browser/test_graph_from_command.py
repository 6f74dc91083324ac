"""A graph made by `featurelens graph` end to end through the viewing side: the page's data,
the Neuronpedia graph export and an intervention on its most influential kept feature."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import featurelens
from graph_store import write_ct_set
from neuronpedia_graph_schema import feature_errors, graph_errors
from synthetic_store import serving

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_built_graph_is_drawn_exported_and_edited(cli, tiny_model_dir: Path, tmp_path: Path,
                                                    store_path: Path) -> None:
    folder = write_ct_set(tmp_path / "ct")
    extracted = cli("extract", "--model", tiny_model_dir, "--dictionary", folder, "--store", store_path,
                    "--tokens", "512", "--context", "32", "--batch-size", "8", "--device", "cpu",
                    "--top-k", "3", "--quantile-examples", "2", "--random-examples", "2", "--split", "all")
    assert extracted.exit_code == 0, extracted.output
    with featurelens.open_store(store_path, read_only=True) as store:
        set_id = store.sql("SELECT dictionary_id FROM dictionaries").item()
    built = cli("graph", "--prompt", "def add(x, y): return x", "--transcoders", set_id, "--store", store_path,
                "--device", "cpu", "--no-progress", "--max-logits", "2")
    assert built.exit_code == 0, built.output
    with featurelens.open_store(store_path, read_only=True) as store:
        graph_id = store.sql("SELECT graph_id FROM graphs").item()
        kept = set(store.sql("SELECT node_id FROM graph_nodes WHERE kept")["node_id"])
        top = store.sql("SELECT node_id FROM graph_nodes WHERE kind = 'feature' AND kept "
                        "ORDER BY influence DESC LIMIT 1").item()
        targets = json.loads(store.sql("SELECT CAST(targets AS VARCHAR) FROM graphs").item())

    with serving(store_path) as url:
        data = json.loads(urllib.request.urlopen(f"{url}graph/{graph_id}/data.json").read())
    assert {n["id"] for n in data["nodes"] if n["kept"]} == kept
    assert all(n["href"] and n["examples"] for n in data["nodes"] if n["kind"] == "feature" and n["kept"])

    out = tmp_path / "np"
    exported = cli("export", "--store", store_path, "--format", "neuronpedia-graph", "--graph", graph_id,
                   "--output", out)
    assert exported.exit_code == 0, exported.output
    document = json.loads(next((out / "graph_data").glob("*.json")).read_text())
    assert graph_errors(document) == [] and {n["node_id"] for n in document["nodes"]} == kept
    for feature in {n["feature"] for n in document["nodes"] if n["feature"] is not None}:
        assert feature_errors(json.loads((out / "features" / f"{feature}.json").read_text())) == []

    edited = cli("intervene", graph_id, "--ablate", top, "--store", store_path, "--device", "cpu", "--json")
    assert edited.exit_code == 0, edited.output
    body = json.loads(edited.output[edited.output.index("{"):])
    assert [r["token_id"] for r in body["targets"]] == [t["token_id"] for t in targets if "token_id" in t]
    assert [r["p_before"] for r in body["targets"]] == pytest.approx(
        [t["probability"] for t in targets if "token_id" in t], rel=1e-4)
