"""Building one attribution graph: prompt -> replacement model -> rows -> pruned graph.

The result, :class:`AttributionGraph`, holds the graph as the store keeps it (node and
edge tables, see ``graph_nodes``/``graph_edges`` in docs/schema.md) and the unpruned
adjacency rows for checks. Node ids are readable and stable: ``L_F_P`` for feature ``F``
(global index in the set) of layer ``L`` at position ``P``, ``L_error_P``, ``E_T_P``
for the embedding of token id ``T`` and ``logit_T_P`` (``logit_A-B_P`` for a
difference) for a target read at the last position ``P``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.transcoder_set import TranscoderSet
from featurelens.graphs.active import ActiveFeatures, find_active
from featurelens.graphs.attribution import Attributor, Rows
from featurelens.graphs.pruning import Adjacency, Pruned, prune, scores
from featurelens.graphs.replacement import LocalReplacement
from featurelens.graphs.targets import DEFAULT_MAX_LOGITS, DEFAULT_PROBABILITY, Target, resolve_targets

DEFAULT_NODE_THRESHOLD = 0.8
DEFAULT_EDGE_THRESHOLD = 0.98
DEFAULT_MAX_FEATURE_NODES = 7500
#: Longest prompt a graph is built for; the rows grow linearly with it.
MAX_PROMPT_TOKENS = 4096


@dataclass
class AttributionGraph:
    """One graph, pruned and scored, with everything the store keeps."""

    prompt: str
    input_ids: list[int]
    prompt_tokens: list[str]
    targets: list[Target]
    node_threshold: float
    edge_threshold: float
    max_feature_nodes: int
    replacement_score: float
    completeness_score: float
    nodes: list[dict[str, Any]]  #: graph_nodes rows without graph_id
    edges: list[dict[str, Any]]  #: graph_edges rows without graph_id
    adjacency: Adjacency
    pruned: Pruned
    active: ActiveFeatures
    selected: torch.Tensor  #: indices into ``active`` of the feature nodes
    extra: dict[str, Any] = field(default_factory=dict)

    def graph_id(self, dictionary_id: str, model_id: str) -> str:
        """Hash of what determines the graph: set, model, tokens, targets, settings."""
        key = json.dumps({"dictionary": dictionary_id, "model": model_id, "ids": self.input_ids,
                          "targets": [t.label for t in self.targets],
                          "node": self.node_threshold, "edge": self.edge_threshold,
                          "max": self.max_feature_nodes}, sort_keys=True)
        return "g-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def tokenize_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's token ids, starting with a special token (BOS, else pad, eos...).

    Position 0 is the attention sink and carries no feature nodes; starting with a
    special token keeps the prompt's first real token in the graph."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise FeaturelensError("--prompt is empty; pass the text whose next token to explain.")
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    special = set(tokenizer.all_special_ids)
    if ids and ids[0] in special:
        return ids
    for candidate in (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id,
                      *tokenizer.all_special_ids):
        if candidate is not None:
            return [int(candidate)] + ids
    return ids


def build_graph(model: Any, tokenizer: Any, transcoders: TranscoderSet, prompt: str | Sequence[int], *,
                targets: Sequence[str] | None = None,
                node_threshold: float = DEFAULT_NODE_THRESHOLD,
                edge_threshold: float = DEFAULT_EDGE_THRESHOLD,
                max_feature_nodes: int = DEFAULT_MAX_FEATURE_NODES,
                desired_probability: float = DEFAULT_PROBABILITY, max_logits: int = DEFAULT_MAX_LOGITS,
                batch_size: int = 64, dtype: torch.dtype = torch.float32,
                show_progress: bool = True) -> AttributionGraph:
    """The attribution graph of ``prompt``'s next token through ``transcoders``.

    ``model`` is a transformers Llama-style causal LM, ``prompt`` a text (a special token
    is put first, see :func:`tokenize_prompt`) or token ids used as given.
    """
    for name, value in (("node", node_threshold), ("edge", edge_threshold)):
        if not 0.0 <= float(value) <= 1.0:
            raise FeaturelensError(f"--{name}-threshold must be between 0 and 1, got {value}.")
    if isinstance(prompt, str):
        ids = tokenize_prompt(tokenizer, prompt)
        text = prompt
    else:
        ids = [int(i) for i in prompt]
        text = tokenizer.decode(ids)
    if len(ids) < 2:
        raise FeaturelensError(
            "The prompt has no token after the first position (which carries no features); pass a longer prompt.")
    if len(ids) > MAX_PROMPT_TOKENS:
        raise FeaturelensError(
            f"The prompt is {len(ids)} tokens; graphs are built for at most {MAX_PROMPT_TOKENS}: shorten it.")
    rep = LocalReplacement(model, dtype=dtype)
    with torch.no_grad():
        cache = rep.run(torch.tensor(ids))
    resolved = resolve_targets(targets, logits=cache.logits, unembed=rep.unembed.to(torch.float32),
                               tokenizer=tokenizer, desired_probability=desired_probability,
                               max_logits=max_logits)
    active = find_active(transcoders, cache.mlp_in, cache.mlp_out, dtype=dtype)
    with torch.no_grad():
        rows = Attributor(rep, transcoders, active, batch_size=batch_size).run(
            resolved, max_feature_nodes, show_progress=show_progress)
    adjacency = square_rows(rows, resolved)
    pruned = prune(adjacency, node_threshold, edge_threshold)
    replacement, completeness = scores(adjacency)
    tokens = [tokenizer.decode([i]) for i in ids]
    nodes, edges = tables(adjacency, pruned, active, rows.selected, resolved, ids, tokens, rep.n_layers)
    return AttributionGraph(
        prompt=text, input_ids=ids, prompt_tokens=tokens, targets=resolved,
        node_threshold=float(node_threshold), edge_threshold=float(edge_threshold),
        max_feature_nodes=int(max_feature_nodes), replacement_score=replacement,
        completeness_score=completeness, nodes=nodes, edges=edges, adjacency=adjacency, pruned=pruned,
        active=active, selected=rows.selected)


def square_rows(rows: Rows, targets: Sequence[Target]) -> Adjacency:
    """Rows over ``[selected features, errors, tokens, targets]``, features in node order."""
    k, m = len(rows.selected), rows.n_active
    columns = torch.cat([rows.selected, torch.arange(m, rows.matrix.shape[1])])
    t = rows.n_targets
    n_nodes = k + (rows.matrix.shape[1] - m) + t
    matrix = torch.zeros(k + t, n_nodes, dtype=rows.matrix.dtype)
    feature_rows = rows.matrix[t:]
    order = torch.argsort(rows.row_nodes[t:])
    matrix[:k, :n_nodes - t] = feature_rows[order][:, columns]
    matrix[k:, :n_nodes - t] = rows.matrix[:t][:, columns]
    weights = torch.tensor([target.weight for target in targets], dtype=rows.matrix.dtype)
    return Adjacency(rows=matrix, n_features=k, n_layers=rows.n_layers, n_positions=rows.n_positions,
                     weights=weights)


def node_ids(active: ActiveFeatures, selected: torch.Tensor, targets: Sequence[Target],
             ids: Sequence[int], n_layers: int) -> list[str]:
    """Readable node ids in node order (see the module docstring)."""
    n = len(ids)
    out = [f"{int(active.layer[i])}_{int(active.feature[i])}_{int(active.position[i])}" for i in selected]
    out += [f"{layer}_error_{p}" for layer in range(n_layers) for p in range(n)]
    out += [f"E_{int(ids[p])}_{p}" for p in range(n)]
    for target in targets:
        name = target.token_id if target.plus is None else f"{target.plus}-{target.minus}"
        out.append(f"logit_{name}_{n - 1}")
    return out


def tables(adjacency: Adjacency, pruned: Pruned, active: ActiveFeatures, selected: torch.Tensor,
           targets: Sequence[Target], ids: Sequence[int], tokens: Sequence[str],
           n_layers: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``graph_nodes`` and ``graph_edges`` rows (edges only between kept nodes, nonzero)."""
    n = len(ids)
    names = node_ids(active, selected, targets, ids, n_layers)
    influence = pruned.influence.tolist()
    kept = pruned.node_mask.tolist()
    nodes: list[dict[str, Any]] = []
    for j, i in enumerate(selected.tolist()):
        p = int(active.position[i])
        nodes.append({"node_id": names[j], "kind": "feature", "layer": int(active.layer[i]), "position": p,
                      "feature": int(active.feature[i]), "token": tokens[p],
                      "activation": float(active.activation[i]), "influence": influence[j], "kept": kept[j]})
    base = len(selected)
    for layer in range(n_layers):
        for p in range(n):
            j = base + layer * n + p
            nodes.append({"node_id": names[j], "kind": "error", "layer": layer, "position": p, "feature": None,
                          "token": tokens[p], "activation": None, "influence": influence[j], "kept": kept[j]})
    base += n_layers * n
    for p in range(n):
        j = base + p
        nodes.append({"node_id": names[j], "kind": "embedding", "layer": -1, "position": p, "feature": None,
                      "token": tokens[p], "activation": None, "influence": influence[j], "kept": kept[j]})
    base += n
    for t, target in enumerate(targets):
        j = base + t
        nodes.append({"node_id": names[j], "kind": "logit", "layer": n_layers, "position": n - 1,
                      "feature": None, "token": target.label, "activation": target.value,
                      "influence": influence[j], "kept": kept[j]})
    row_nodes = adjacency.row_nodes
    row_kept = pruned.node_mask[row_nodes]
    live = (adjacency.rows != 0) & row_kept[:, None] & pruned.node_mask[None, :]
    r, c = torch.nonzero(live, as_tuple=True)
    weights = adjacency.rows[r, c].tolist()
    flags = pruned.edge_mask[r, c].tolist()
    targets_of = row_nodes[r].tolist()
    edges = [{"source": names[s], "target": names[tgt], "weight": w, "kept": f}
             for s, tgt, w, f in zip(c.tolist(), targets_of, weights, flags)]
    return nodes, edges
