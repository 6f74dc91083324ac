"""``featurelens export --format neuronpedia-graph --graph ID``: a graph as Neuronpedia's graph
viewer loads it, with the per-feature detail files it fetches.

Written to the output folder:

- ``graph_data/<slug>.json``: the graph document of Neuronpedia's
  ``apps/webapp/app/api/graph/graph-schema.json`` (``metadata``, ``qParams``, ``nodes``,
  ``links``). Nodes keep featurelens's ids (feature ``L_F_P`` with ``F`` the feature's index
  in the transcoder set, error ``L_error_P``, embedding ``E_T_P``, logit ``L_T_P``);
  ``feature`` is the set's feature index, which is also the detail file's name, so the
  viewer fetches ``<feature_json_base_url>/<feature>.json``. ``clerp`` (the label the
  viewer shows) is the node's stored label. ``feature_type`` is what the viewer draws:
  "cross layer transcoder" for feature nodes (it has no separate name for per-layer
  transcoders), "mlp reconstruction error", "embedding", "logit".
- ``features/<feature>.json``: each feature node's detail file (``index``,
  ``examples_quantiles``: top windows then each activation-quantile bin's, as tokens and
  per-token activations; ``top_logits``/``bottom_logits``), read from the store in chunks.

By default only the nodes and edges that survived pruning are written (``kept``), with the
graph's thresholds in ``metadata.pruning_settings``; ``--all-nodes`` writes every stored one.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Iterator

import featurelens
from featurelens.browser.graph_data import GraphData, Query

FEATURE_TYPES = {"feature": "cross layer transcoder", "error": "mlp reconstruction error",
                 "embedding": "embedding", "logit": "logit"}
#: Features whose detail files are read in one query.
DETAIL_CHUNK = 256
TOP_EXAMPLES = 10
QUANTILE_EXAMPLES = 5


def slug_of(graph_id: str) -> str:
    """A URL- and file-safe slug for a graph id."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", graph_id).strip("-").lower() or "graph"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _js_node_id(node: dict[str, Any], n_prompt: int) -> str:
    """The id the viewer keys a node's hover state by across prompts (position from the end)."""
    from_end = n_prompt - 1 - int(node["position"])
    kind = node["kind"]
    if kind == "feature":
        return f"{node['layer']}_{node['feature']}-{from_end}"
    if kind == "error":
        return f"{node['layer']}_error-{from_end}"
    token = node["node_id"].split("_")[1]
    return f"{'E' if kind == 'embedding' else 'L'}_{token}-{from_end}"


def _clerp(node: dict[str, Any]) -> str:
    if node["kind"] == "feature":
        return node["label"] or ""
    if node["kind"] == "logit":
        p = _finite(node["activation"])
        return f'Output "{node["token"]}"' + (f" (p={p:.3f})" if p is not None else "")
    return ""  # the viewer writes "Emb: ..." and "Err: mlp ..." itself


def graph_document(data: GraphData, *, slug: str, feature_json_base_url: str,
                   all_nodes: bool = False) -> dict[str, Any]:
    """The Neuronpedia graph JSON of ``data`` (module docstring)."""
    graph = data.graph
    tokens = list(graph["prompt_tokens"])
    nodes = [n for n in data.nodes if all_nodes or n["kept"]]
    ids = {n["node_id"] for n in nodes}
    targets = {int(t["token_id"]) for t in graph["targets"] if isinstance(t, dict) and "token_id" in t}
    out_nodes = []
    for node in nodes:
        entry: dict[str, Any] = {
            "node_id": node["node_id"],
            "feature": int(node["feature"]) if node["kind"] == "feature" else None,
            "layer": "E" if node["kind"] == "embedding" else str(node["layer"]),
            "ctx_idx": int(node["position"]), "feature_type": FEATURE_TYPES[node["kind"]],
            "jsNodeId": _js_node_id(node, len(tokens)), "clerp": _clerp(node),
            "influence": _finite(node["influence"]), "activation": _finite(node["activation"]),
        }
        if node["kind"] == "logit":
            token_id = node["node_id"].split("_")[1]
            entry["token_prob"] = _finite(node["activation"]) or 0.0
            entry["is_target_logit"] = token_id.isdigit() and int(token_id) in targets
        if node["kind"] == "feature" and node["label_score"] is not None:
            entry["label_score"] = _finite(node["label_score"])
            entry["label_source"] = node["label_source"]
        out_nodes.append(entry)
    links = [{"source": e["source"], "target": e["target"], "weight": _finite(e["weight"]) or 0.0}
             for e in data.edges if e["source"] in ids and e["target"] in ids and (all_nodes or e["kept"])]
    created = graph.get("created_at")
    metadata: dict[str, Any] = {
        "slug": slug, "scan": graph["model_id"], "prompt_tokens": tokens, "prompt": graph["prompt"],
        "node_threshold": _finite(graph["node_threshold"]),
        "feature_details": {"feature_json_base_url": feature_json_base_url},
        "info": {"description": f"featurelens graph {graph['graph_id']} over transcoder set "
                                f"{graph['dictionary_id']}; replacement score "
                                f"{_score(graph['replacement_score'])}, completeness {_score(graph['completeness_score'])}.",
                 "generator": {"name": "featurelens", "version": featurelens.__version__},
                 "create_time_ms": int(created.timestamp() * 1000) if hasattr(created, "timestamp")
                 else int(time.time() * 1000)},
        "generation_settings": {"max_feature_nodes": int(graph["max_feature_nodes"])},
        "pruning_settings": {"node_threshold": _finite(graph["node_threshold"]),
                             "edge_threshold": _finite(graph["edge_threshold"])},
        "featurelens": {"graph_id": graph["graph_id"], "dictionary_id": graph["dictionary_id"],
                        "targets": graph["targets"], "replacement_score": _finite(graph["replacement_score"]),
                        "completeness_score": _finite(graph["completeness_score"])},
    }
    return {"metadata": metadata, "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both"},
            "nodes": out_nodes, "links": links}


def _score(value: Any) -> str:
    number = _finite(value)
    return "unknown" if number is None else f"{number:.3f}"


def feature_details(query: Query, dictionary_id: str, features: list[int]) -> Iterator[dict[str, Any]]:
    """The viewer's detail document of each feature, ``DETAIL_CHUNK`` features per query."""
    for start in range(0, len(features), DETAIL_CHUNK):
        chunk = features[start:start + DETAIL_CHUNK]
        stats = {int(r["feature"]): r for r in query(
            "SELECT feature, top_logits, bottom_logits FROM features WHERE dictionary_id = ? "
            "AND feature IN (SELECT unnest(?))", [dictionary_id, chunk])}
        rows = query(
            "SELECT e.feature, e.kind, e.rank, e.quantile, e.activations, s.token_strs FROM examples e "
            "JOIN sequences s USING (corpus_id, sequence_id) WHERE e.dictionary_id = ? "
            "AND e.feature IN (SELECT unnest(?)) AND ((e.kind = 'top' AND e.rank < ?) OR e.kind = 'quantile') "
            "ORDER BY e.feature, e.kind DESC, e.quantile DESC NULLS FIRST, e.rank",
            [dictionary_id, chunk, TOP_EXAMPLES])
        grouped: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(int(row["feature"]), []).append(row)
        for feature in chunk:
            sections: dict[str, list[dict[str, Any]]] = {}
            for row in grouped.get(feature, []):
                name = "Top activations" if row["kind"] == "top" else f"Quantile {int(row['quantile'] or 0) + 1}"
                shown = sections.setdefault(name, [])
                if row["kind"] == "quantile" and len(shown) >= QUANTILE_EXAMPLES:
                    continue
                shown.append({"tokens": list(row["token_strs"]),
                              "tokens_acts_list": [_finite(a) or 0.0 for a in row["activations"]]})
            stat = stats.get(feature, {})
            yield {"index": feature,
                   "examples_quantiles": [{"quantile_name": k, "examples": v} for k, v in sections.items()],
                   "top_logits": list(stat.get("top_logits") or []),
                   "bottom_logits": list(stat.get("bottom_logits") or [])}


def dumps(document: dict[str, Any]) -> str:
    """JSON the viewer parses: no NaN or infinity (non-finite numbers were written as null)."""
    return json.dumps(document, allow_nan=False, ensure_ascii=False, default=str)


def write(query: Query, data: GraphData, staging: Any, *, slug: str, feature_json_base_url: str,
          all_nodes: bool = False) -> int:
    """Write the graph document and its features' detail files into ``staging``; returns
    the number of detail files (files already finished by an interrupted run are kept)."""
    document = graph_document(data, slug=slug, feature_json_base_url=feature_json_base_url, all_nodes=all_nodes)
    features = sorted({n["feature"] for n in document["nodes"] if n["feature"] is not None})
    todo = [f for f in features if not staging.done(f"features/{f}.json")]
    for detail in feature_details(query, data.graph["dictionary_id"], todo):
        staging.write_text(f"features/{detail['index']}.json", dumps(detail))
    staging.write_text(f"graph_data/{slug}.json", dumps(document))
    return len(features)
