"""Graphs in the store: ``graphs``, ``graph_nodes`` and ``graph_edges`` (migration 0008).

:func:`save_graph` writes a graph in one transaction and replaces a graph with the same
id (same set, model, tokens, targets and settings), so building again never duplicates
rows and an interrupted write leaves nothing half-written. A graph is then a SQL query
away, e.g. the kept feature nodes with their stored statistics::

    SELECT n.node_id, n.label, f.density FROM graph_nodes n
    JOIN graphs g USING (graph_id)
    JOIN features f ON f.dictionary_id = g.dictionary_id AND f.feature = n.feature
    WHERE n.graph_id = ? AND n.kept AND n.kind = 'feature'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from featurelens.core.errors import FeaturelensError
from featurelens.core.store.database import Store
from featurelens.graphs.build import AttributionGraph

NODE_SCHEMA = {
    "graph_id": pl.Utf8, "node_id": pl.Utf8, "kind": pl.Utf8, "layer": pl.Int32, "position": pl.Int32,
    "feature": pl.Int32, "token": pl.Utf8, "activation": pl.Float64, "influence": pl.Float64,
    "kept": pl.Boolean, "label": pl.Utf8, "label_score": pl.Float64, "label_source": pl.Utf8,
}
EDGE_SCHEMA = {"graph_id": pl.Utf8, "source": pl.Utf8, "target": pl.Utf8, "weight": pl.Float64,
               "kept": pl.Boolean}


@dataclass
class StoredGraph:
    """A graph read back: its ``graphs`` row and its node and edge tables."""

    graph: dict[str, Any]
    nodes: pl.DataFrame
    edges: pl.DataFrame


def save_graph(store: Store, graph: AttributionGraph, *, dictionary_id: str, model_id: str) -> str:
    """Write ``graph`` (replacing one with the same id); returns its ``graph_id``."""
    graph_id = graph.graph_id(dictionary_id, model_id)
    row = pl.DataFrame([{
        "graph_id": graph_id, "dictionary_id": dictionary_id, "model_id": model_id,
        "prompt": graph.prompt, "prompt_tokens": graph.prompt_tokens,
        "targets": json.dumps([t.as_json() for t in graph.targets]),
        "node_threshold": graph.node_threshold, "edge_threshold": graph.edge_threshold,
        "max_feature_nodes": graph.max_feature_nodes, "replacement_score": graph.replacement_score,
        "completeness_score": graph.completeness_score,
    }])
    nodes = pl.DataFrame([{**node, "graph_id": graph_id} for node in graph.nodes],
                         schema={k: v for k, v in NODE_SCHEMA.items()
                                 if k not in ("label", "label_score", "label_source")})
    edges = pl.DataFrame([{**edge, "graph_id": graph_id} for edge in graph.edges], schema=EDGE_SCHEMA)
    with store.transaction():
        delete_graph(store, graph_id)
        store.insert("graphs", row)
        store.insert("graph_nodes", nodes)
        store.insert("graph_edges", edges)
    return graph_id


def delete_graph(store: Store, graph_id: str) -> None:
    """Remove a graph's rows (inside the caller's transaction)."""
    for table in ("graph_edges", "graph_nodes", "graphs"):
        store.execute(f"DELETE FROM {table} WHERE graph_id = ?", [graph_id])


def load_graph(store: Store, graph_id: str) -> StoredGraph:
    """The graph ``graph_id``: its row, nodes (node order) and edges."""
    found = store.sql("SELECT * FROM graphs WHERE graph_id = ?", [graph_id])
    if found.height == 0:
        known = store.sql("SELECT graph_id FROM graphs ORDER BY created_at DESC LIMIT 5")["graph_id"].to_list()
        raise FeaturelensError(
            f"There is no graph {graph_id!r} in the store ({'recent: ' + ', '.join(known) if known else 'no graphs yet'}); "
            "build one with featurelens graph --prompt TEXT --transcoders SET.")
    row = found.row(0, named=True)
    row["targets"] = json.loads(row["targets"]) if isinstance(row["targets"], str) else row["targets"]
    nodes = store.sql(
        "SELECT * FROM graph_nodes WHERE graph_id = ? ORDER BY CASE kind WHEN 'embedding' THEN 0 "
        "WHEN 'feature' THEN 1 WHEN 'error' THEN 2 ELSE 3 END, layer, position, feature, node_id", [graph_id])
    edges = store.sql("SELECT * FROM graph_edges WHERE graph_id = ? ORDER BY target, source", [graph_id])
    return StoredGraph(graph=row, nodes=nodes, edges=edges)
