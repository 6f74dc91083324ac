"""The graph pages: the list of attribution graphs and one graph drawn by ``static/graph.js``.

The page itself is a template (prompt, scores, targets, the controls); the drawing is
our own script, served from ``/static`` like the stylesheet (no CDN, no network), which
reads the graph from ``/graph/<id>/data.json``: every stored node with its label and a
few top windows for the hover card, every stored edge, and the feature page URL of each
feature node. Nodes are laid out by layer (rows, embeddings at the bottom, logits at the
top) and prompt position (columns, as wide as their busiest row). The page's controls: a
pruning slider that starts at the graph's node threshold, where it shows exactly the nodes
and edges the graph's pruning kept (lower drops kept nodes by influence, higher adds pruned
ones back), shift-click to pin a node (pins are
kept in the URL's ``#pinned=`` part and always drawn), click to open the feature page,
and, when the server holds the model (``serve --model``), ablating or steering the
pinned feature nodes through ``/graph/<id>/intervene``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from featurelens.browser.graph_data import GraphData
from featurelens.browser.templating import render


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def graph_payload(data: GraphData, links: Any, intervene_url: str | None) -> dict[str, Any]:
    """What ``graph.js`` draws (module docstring); every number finite or null."""
    graph = data.graph
    did = graph["dictionary_id"]
    nodes = []
    for node in data.nodes:
        entry = {"id": node["node_id"], "kind": node["kind"], "layer": int(node["layer"]),
                 "position": int(node["position"]), "token": node["token"],
                 "activation": _number(node["activation"]), "influence": _number(node["influence"]),
                 "kept": bool(node["kept"]), "label": node["label"], "label_score": _number(node["label_score"]),
                 "label_source": node["label_source"]}
        if node["kind"] == "feature" and node["feature"] is not None:
            feature = int(node["feature"])
            entry.update(feature=feature, href=links.feature(did, feature), examples=data.examples.get(feature, []))
        nodes.append(entry)
    edges = [{"source": e["source"], "target": e["target"], "weight": _number(e["weight"]) or 0.0,
              "kept": bool(e["kept"])} for e in data.edges]
    return {"graph_id": graph["graph_id"], "dictionary_id": did, "prompt_tokens": list(graph["prompt_tokens"]),
            "n_layers": data.n_layers, "node_threshold": _number(graph["node_threshold"]),
            "targets": graph["targets"], "nodes": nodes, "edges": edges, "intervene": intervene_url}


def graph_json(data: GraphData, links: Any, intervene_url: str | None) -> bytes:
    return json.dumps(graph_payload(data, links, intervene_url), allow_nan=False, default=str).encode()


def graph_page(data: GraphData, links: Any, data_url: str, can_intervene: bool) -> str:
    """The page around the drawing: prompt, scores, targets and the controls."""
    graph = data.graph
    counts = {"feature": 0, "kept": 0, "edges": len(data.edges)}
    for node in data.nodes:
        if node["kind"] == "feature":
            counts["feature"] += 1
            counts["kept"] += bool(node["kept"])
    return render("graph.html", title=f"Graph {graph['graph_id']}", links=links, graph=graph, counts=counts,
                  data_url=data_url, can_intervene=can_intervene,
                  threshold=_number(graph["node_threshold"]) or 0.8)


def graphs_page(graphs: list[dict[str, Any]], links: Any) -> str:
    return render("graphs.html", title="Attribution graphs", links=links, graphs=graphs)
