"""An attribution graph read from the store, as the graph page and the graph exports use it.

``graphs``, ``graph_nodes`` and ``graph_edges`` (migration 0008) hold the graph; its
feature nodes join the set's ``examples`` and ``sequences`` for the few top windows a
hover card shows, read in one query for all of the graph's features (a graph has at most
``max_feature_nodes`` of them, so this is bounded by the graph, not by the set's width).
A store written before migration 0008 has no graphs: :func:`list_graphs` is then empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from featurelens.browser.templating import display_token

Query = Callable[[str, list[Any]], list[dict[str, Any]]]

#: Top windows shown per feature node on hover, and tokens kept each side of the peak.
HOVER_EXAMPLES = 3
HOVER_CONTEXT = 8

_HAS_GRAPHS = "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'graphs'"


@dataclass
class GraphData:
    """One graph: its ``graphs`` row, every stored node and edge, hover examples by feature."""

    graph: dict[str, Any]
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    examples: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        """The model's layer count: logit nodes sit one row above the last layer."""
        logits = [n["layer"] for n in self.nodes if n["kind"] == "logit"]
        layers = [n["layer"] for n in self.nodes if n["kind"] in ("feature", "error")]
        return max(logits) if logits else (max(layers) + 1 if layers else 0)

    def feature_ids(self) -> list[int]:
        return sorted({int(n["feature"]) for n in self.nodes if n["kind"] == "feature" and n["feature"] is not None})


def has_graphs(query: Query) -> bool:
    return bool(query(_HAS_GRAPHS, [])[0]["n"])


def list_graphs(query: Query) -> list[dict[str, Any]]:
    """Every graph, newest first, with its node counts."""
    if not has_graphs(query):
        return []
    return query(
        "SELECT g.graph_id, g.dictionary_id, g.model_id, g.prompt, g.replacement_score, g.completeness_score, "
        "g.created_at, count(n.node_id) FILTER (WHERE n.kind = 'feature') AS n_features, "
        "count(n.node_id) FILTER (WHERE n.kind = 'feature' AND n.kept) AS n_kept "
        "FROM graphs g LEFT JOIN graph_nodes n USING (graph_id) GROUP BY ALL ORDER BY g.created_at DESC, g.graph_id",
        [])


def load_graph(query: Query, graph_id: str, *, examples: int = HOVER_EXAMPLES,
               context: int = HOVER_CONTEXT) -> GraphData | None:
    """The graph ``graph_id`` with hover examples for its feature nodes, or None."""
    if not has_graphs(query):
        return None
    rows = query("SELECT graph_id, dictionary_id, model_id, prompt, prompt_tokens, CAST(targets AS VARCHAR) AS targets, "
                 "node_threshold, edge_threshold, max_feature_nodes, replacement_score, completeness_score, "
                 "created_at FROM graphs WHERE graph_id = ?", [graph_id])
    if not rows:
        return None
    graph = rows[0]
    try:
        graph["targets"] = json.loads(graph["targets"]) if graph["targets"] else []
    except json.JSONDecodeError:
        graph["targets"] = []
    nodes = query("SELECT node_id, kind, layer, position, feature, token, activation, influence, kept, label, "
                  "label_score, label_source FROM graph_nodes WHERE graph_id = ? "
                  "ORDER BY layer, position, feature NULLS FIRST, node_id", [graph_id])
    edges = query("SELECT source, target, weight, kept FROM graph_edges WHERE graph_id = ? "
                  "ORDER BY abs(weight) DESC", [graph_id])
    data = GraphData(graph, nodes, edges)
    if examples > 0:
        data.examples = hover_examples(query, graph["dictionary_id"], data.feature_ids(), examples, context)
    return data


def hover_examples(query: Query, dictionary_id: str, features: list[int], per_feature: int,
                   context: int) -> dict[int, list[dict[str, Any]]]:
    """Each feature's best ``per_feature`` top windows, cut to ``context`` tokens around the peak,
    with activations scaled to the feature's largest stored activation (0..1)."""
    if not features:
        return {}
    rows = query(
        "SELECT e.feature, e.rank, e.activations, e.max_activation, e.max_position, s.token_strs, "
        "f.max_activation AS feature_max FROM examples e "
        "JOIN sequences s USING (corpus_id, sequence_id) "
        "LEFT JOIN features f ON f.dictionary_id = e.dictionary_id AND f.feature = e.feature "
        "WHERE e.dictionary_id = ? AND e.kind = 'top' AND e.rank < ? AND e.feature IN (SELECT unnest(?)) "
        "ORDER BY e.feature, e.rank", [dictionary_id, per_feature, features])
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        peak = int(row["max_position"])
        first, last = max(0, peak - context), peak + context + 1
        top = float(row["feature_max"] or row["max_activation"] or 0.0) or 1.0
        tokens = row["token_strs"][first:last]
        acts = row["activations"][first:last]
        out.setdefault(int(row["feature"]), []).append({
            "tokens": [display_token(t) for t in tokens],
            "acts": [round(max(0.0, float(a)) / top, 3) for a in acts],
            "peak": peak - first, "max_activation": float(row["max_activation"])})
    return out
