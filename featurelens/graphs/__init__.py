"""Attribution graphs over a transcoder set, whose nodes carry featurelens labels.

The one entrance for other packages (the CLI, the browser's graph page, exports,
interventions from a graph)::

    from featurelens.graphs import build_graph, save_graph, load_graph, label_nodes

- :func:`build_graph` (graphs/build.py): prompt -> local replacement model (attention
  patterns and RMSNorm scales frozen, MLPs replaced by per-layer transcoders plus error
  nodes) -> edge rows by batched backward passes -> pruning by cumulative node and edge
  influence -> replacement and completeness scores (Ameisen et al. 2025, as
  circuit-tracer 0.5 computes them).
- :func:`save_graph` / :func:`load_graph` (graphs/storage.py): the tables ``graphs``,
  ``graph_nodes``, ``graph_edges`` (migration 0008; docs/schema.md).
- :func:`label_nodes` (graphs/labels.py): each feature node's best-scored explanation in
  the store, else a token-lookup label made on the spot.

A transcoder set is one dictionary (:class:`featurelens.core.transcoder_set.TranscoderSet`):
its global feature index is ``feature_offset(layer) + local index``, offsets in
``transcoder_layers`` and in the dictionary's ``config["layers"]``. ``graph_nodes.feature``
is that global index, so nodes join ``features``, ``explanations`` and ``scores`` on
``(dictionary_id, feature)``.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AttributionGraph": "featurelens.graphs.build",
    "build_graph": "featurelens.graphs.build",
    "tokenize_prompt": "featurelens.graphs.build",
    "DEFAULT_NODE_THRESHOLD": "featurelens.graphs.build",
    "DEFAULT_EDGE_THRESHOLD": "featurelens.graphs.build",
    "DEFAULT_MAX_FEATURE_NODES": "featurelens.graphs.build",
    "Target": "featurelens.graphs.targets",
    "parse_target": "featurelens.graphs.targets",
    "resolve_targets": "featurelens.graphs.targets",
    "save_graph": "featurelens.graphs.storage",
    "load_graph": "featurelens.graphs.storage",
    "StoredGraph": "featurelens.graphs.storage",
    "label_nodes": "featurelens.graphs.labels",
    "TranscoderSet": "featurelens.core.transcoder_set",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Lazy re-exports, so importing the package does not import torch."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'featurelens.graphs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
