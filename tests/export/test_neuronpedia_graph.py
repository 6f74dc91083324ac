"""`featurelens export --format neuronpedia-graph`: a graph from a real store, valid against
Neuronpedia's graph schema, with a detail file for every feature node it names."""

from __future__ import annotations

import json
from pathlib import Path

from graph_store import GraphStore
from neuronpedia_graph_schema import feature_errors, graph_errors


def test_graph_export_is_valid_and_complete(cli, graph_store: GraphStore, tmp_path: Path) -> None:
    out = tmp_path / "np"
    result = cli("export", "--store", graph_store.path, "--format", "neuronpedia-graph", "--graph",
                 graph_store.graph_id, "--output", out, "--feature-base-url", "https://example.org/f")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "graph_data" / "graph-test-1.json").read_text())
    assert graph_errors(document) == []
    meta = document["metadata"]
    assert meta["feature_details"]["feature_json_base_url"] == "https://example.org/f"
    assert meta["scan"] and meta["prompt_tokens"] and meta["pruning_settings"]["node_threshold"] == 0.8
    ids = {n["node_id"] for n in document["nodes"]}
    assert ids == graph_store.kept_ids and graph_store.pruned_id not in ids
    assert all(link["source"] in ids and link["target"] in ids for link in document["links"])
    assert document["links"] and not any(graph_store.pruned_id in (l["source"], l["target"]) for l in document["links"])
    by_id = {n["node_id"]: n for n in document["nodes"]}
    first = graph_store.feature_nodes[0]
    node = by_id[first["node_id"]]
    assert node["feature"] == first["feature"] and node["layer"] == str(first["layer"])
    assert node["feature_type"] == "cross layer transcoder" and node["clerp"].startswith("label <b>0</b>")
    assert {by_id[i]["feature_type"] for i in graph_store.logit_ids} == {"logit"}
    assert any(by_id[i]["is_target_logit"] for i in graph_store.logit_ids)
    embeds = [n for n in document["nodes"] if n["feature_type"] == "embedding"]
    assert embeds and all(n["layer"] == "E" and n["feature"] is None for n in embeds)
    # one detail file per feature named in the graph, each valid and with real windows
    features = {n["feature"] for n in document["nodes"] if n["feature"] is not None}
    files = {int(p.stem) for p in (out / "features").glob("*.json")}
    assert files == features
    for feature in features:
        detail = json.loads((out / "features" / f"{feature}.json").read_text())
        assert feature_errors(detail) == [] and detail["index"] == feature
        top = detail["examples_quantiles"][0]
        assert top["quantile_name"] == "Top activations" and top["examples"]
        example = top["examples"][0]
        assert len(example["tokens"]) == len(example["tokens_acts_list"]) and max(example["tokens_acts_list"]) > 0
        assert detail["top_logits"]


def test_all_nodes_and_bad_requests(cli, graph_store: GraphStore, tmp_path: Path) -> None:
    out = tmp_path / "all"
    result = cli("export", "--store", graph_store.path, "--format", "neuronpedia-graph", "--graph",
                 graph_store.graph_id, "--output", out, "--all-nodes")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "graph_data" / "graph-test-1.json").read_text())
    assert graph_store.pruned_id in {n["node_id"] for n in document["nodes"]} and graph_errors(document) == []
    missing = cli("export", "--store", graph_store.path, "--format", "neuronpedia-graph", "--graph", "nope",
                  "--output", tmp_path / "x")
    assert missing.exit_code != 0 and "There is no graph 'nope'" in missing.output and "graph-test-1" in missing.output
    no_id = cli("export", "--store", graph_store.path, "--format", "neuronpedia-graph", "--output", tmp_path / "y")
    assert no_id.exit_code != 0 and "pass --graph ID" in no_id.output


def test_the_validator_catches_a_broken_document() -> None:
    assert graph_errors({"metadata": {"slug": "s"}, "nodes": [{"node_id": 3}], "links": []})
    assert feature_errors({"index": 1, "examples_quantiles": [{"quantile_name": "x"}]})
