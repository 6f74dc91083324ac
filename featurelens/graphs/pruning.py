"""Influence, pruning and the two graph scores, on the rows of an attribution graph.

Only feature and target nodes have incoming edges, so the adjacency is kept as its
nonzero rows (``rows [R, S]`` over all ``S`` nodes, ``row_nodes`` naming each row's
node): nothing ``S x S`` is ever built. The definitions are those of Ameisen et al.
2025 as circuit-tracer computes them:

- *influence* of a node: the target weights propagated back through the row-normalised
  absolute adjacency ``Â`` over paths of every length, ``w Â + w Â² + ...``;
- *node pruning*: keep the nodes of highest influence holding ``node_threshold`` of the
  total (tokens and targets always), zero the rest;
- *edge pruning*: score each remaining edge by its normalised weight times the
  influence (plus weight) of its target, keep the edges holding ``edge_threshold`` of
  the total; then repeatedly drop feature and error nodes with no kept outgoing edge
  and feature nodes with no kept incoming edge;
- *replacement score*: token influence / (token + error influence);
- *completeness score*: the influence-weighted mean, over all nodes, of the share of a
  node's (normalised) input that does not come from error nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Adjacency:
    """Rows of the graph over nodes ``[features k, errors L*n, tokens n, targets T]``."""

    rows: torch.Tensor  #: [k + T, S]: k feature rows (node order), then T target rows
    n_features: int
    n_layers: int
    n_positions: int
    weights: torch.Tensor  #: [T] target weights

    @property
    def n_targets(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.rows.shape[1])

    @property
    def row_nodes(self) -> torch.Tensor:
        k, t = self.n_features, self.n_targets
        return torch.cat([torch.arange(k), torch.arange(self.n_nodes - t, self.n_nodes)])

    @property
    def error_slice(self) -> slice:
        start = self.n_features
        return slice(start, start + self.n_layers * self.n_positions)

    @property
    def token_slice(self) -> slice:
        start = self.n_features + self.n_layers * self.n_positions
        return slice(start, start + self.n_positions)

    def target_weights(self) -> torch.Tensor:
        out = torch.zeros(self.n_nodes, dtype=self.rows.dtype)
        out[self.n_nodes - self.n_targets:] = self.weights.to(self.rows.dtype)
        return out


@dataclass
class Pruned:
    node_mask: torch.Tensor  #: [S] bool
    edge_mask: torch.Tensor  #: [R, S] bool, over the rows
    influence: torch.Tensor  #: [S] node influence before pruning
    cumulative: torch.Tensor  #: [S] share of total influence held by nodes at least as influential


def normalise(rows: torch.Tensor) -> torch.Tensor:
    """Absolute values, each row divided by its sum (rows of zeros stay zero)."""
    out = rows.abs()
    out /= out.sum(dim=1, keepdim=True).clamp(min=1e-10)
    return out


def influence(norm_rows: torch.Tensor, row_nodes: torch.Tensor, weights: torch.Tensor,
              max_iter: int = 1024) -> torch.Tensor:
    """``w Â + w Â² + ...`` over all nodes; stops when nothing is left to propagate."""
    current = weights[row_nodes] @ norm_rows
    total = current.clone()
    for _ in range(max_iter):
        if not bool(current.any()):
            return total
        current = current[row_nodes] @ norm_rows
        total += current
    raise RuntimeError("influence did not settle: the graph has a cycle")


def cut_value(scores: torch.Tensor, share: float) -> torch.Tensor:
    """The smallest score among the largest scores holding ``share`` of the total."""
    ordered = torch.sort(scores.flatten(), descending=True).values
    cumulative = torch.cumsum(ordered, dim=0) / ordered.sum()
    index = int(torch.searchsorted(cumulative, torch.tensor(share, dtype=cumulative.dtype)))
    return ordered[min(index, len(ordered) - 1)]


def prune(adjacency: Adjacency, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """Node then edge pruning (see the module docstring)."""
    for name, value in (("node", node_threshold), ("edge", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            from featurelens.core.errors import FeaturelensError

            raise FeaturelensError(f"--{name}-threshold must be between 0 and 1, got {value}.")
    rows, row_nodes = adjacency.rows, adjacency.row_nodes
    weights = adjacency.target_weights()
    k, t, s = adjacency.n_features, adjacency.n_targets, adjacency.n_nodes
    always = slice(adjacency.token_slice.start, s)
    node_influence = influence(normalise(rows), row_nodes, weights)
    node_mask = node_influence >= cut_value(node_influence, node_threshold)
    node_mask[always] = True

    pruned = rows.clone()
    pruned[~node_mask[row_nodes]] = 0
    pruned[:, ~node_mask] = 0
    norm = normalise(pruned)
    reach = influence(norm, row_nodes, weights) + weights
    edge_scores = norm * reach[row_nodes][:, None]
    edge_mask = edge_scores >= cut_value(edge_scores, edge_threshold)

    sources = slice(0, always.start)  # features and errors: need a kept outgoing edge

    def settle() -> None:
        node_mask[sources] &= edge_mask[:, sources].any(0)
        node_mask[:k] &= edge_mask[:k].any(1)

    previous = node_mask.clone()
    settle()
    while not torch.equal(node_mask, previous):
        previous = node_mask.clone()
        edge_mask[~node_mask[row_nodes]] = False
        edge_mask[:, ~node_mask] = False
        settle()

    ordered, order = torch.sort(node_influence, descending=True)
    cumulative = torch.zeros_like(node_influence)
    cumulative[order] = torch.cumsum(ordered, dim=0) / ordered.sum()
    return Pruned(node_mask=node_mask, edge_mask=edge_mask, influence=node_influence, cumulative=cumulative)


def scores(adjacency: Adjacency) -> tuple[float, float]:
    """``(replacement score, completeness score)`` of the unpruned graph."""
    rows, row_nodes = adjacency.rows, adjacency.row_nodes
    weights = adjacency.target_weights()
    norm = normalise(rows)
    node_influence = influence(norm, row_nodes, weights)
    tokens = node_influence[adjacency.token_slice].sum()
    errors = node_influence[adjacency.error_slice].sum()
    replacement = tokens / (tokens + errors)
    non_error = torch.ones(adjacency.n_nodes, dtype=rows.dtype)
    non_error[row_nodes] = 1 - norm[:, adjacency.error_slice].sum(dim=1)
    output = node_influence + weights
    completeness = (non_error * output).sum() / output.sum()
    return float(replacement), float(completeness)
