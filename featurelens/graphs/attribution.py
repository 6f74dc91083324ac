"""Edge weights by backward passes: one row of direct effects per target node.

Nodes are numbered ``[active features (layer, position, index order), error nodes
(layer-major, then position), token embeddings (position), logits]``. The row of a
target node holds, for every source, ``source vector . d(target input)/d(residual)``
in the local replacement model: for a feature source its activation times its decoder
row, for an error its error vector, for a token its embedding. Rows are computed a batch
of targets at a time (:meth:`LocalReplacement.sweep`), sources contracted in chunks.

Which features get rows: every active feature when there are at most
``max_feature_nodes``; otherwise the logit rows first, then repeatedly the not yet
visited features of highest influence on the logits as far as the rows computed so far
tell (the greedy order of Ameisen et al. 2025), ``refresh`` batches between re-rankings.

Memory: the rows kept are ``(max_feature_nodes + targets) x (active + (layers + 1) *
positions)`` floats, linear in the prompt; the sweep holds ``batch x positions x d``
gradients and attention in chunks of query positions. Sizes are checked before the
rows are allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.progress import progress
from featurelens.core.transcoder_set import TranscoderSet
from featurelens.graphs.active import ActiveFeatures, transcoder_parts
from featurelens.graphs.replacement import LocalReplacement
from featurelens.graphs.targets import Target

#: Elements of one chunk of padded decoder block plus products while contracting feature sources.
CONTRACT_ELEMENTS = 16 * 2**20
#: Refuse to allocate the row matrix beyond this many bytes (one clear sentence instead).
ROW_BYTES_LIMIT = 16 * 2**30
#: The padded decoder blocks of every layer are kept when they fit in this many bytes.
SOURCE_CACHE_BYTES = 512 * 2**20


class LayerSources:
    """One layer's active features as sources, laid out for one batched product per chunk.

    Active features are sorted by position, so each position's features are a contiguous
    run; padding every run to the longest (``kmax``) gives ``[positions, kmax, d]`` blocks of
    activation-scaled decoder rows, and ``bmm`` of the gradients ``[positions, B, d]`` with
    them gives every feature's edge at once, without gathering ``[B, features, d]``.
    """

    def __init__(self, active: ActiveFeatures, part: slice, n: int, w_dec: torch.Tensor,
                 dtype: torch.dtype, cache: bool):
        self.start, self.stop, self.n = part.start, part.stop, n
        positions = active.position[part]
        counts = torch.bincount(positions, minlength=n)
        self.pos_start = torch.zeros(n + 1, dtype=torch.long, device=positions.device)
        self.pos_start[1:] = torch.cumsum(counts, 0)
        self.kmax = int(counts.max()) if len(positions) else 0
        self.positions = positions
        self.rank = torch.arange(len(positions), device=positions.device) - self.pos_start[positions]
        self.vectors_of = lambda a, b: (w_dec[active.local[self.start + a:self.start + b]]
                                        * active.activation[self.start + a:self.start + b, None].to(dtype))
        self.block = self.build(0, n) if cache and self.kmax else None

    def nbytes(self, d: int, itemsize: int) -> int:
        return self.n * self.kmax * d * itemsize

    def build(self, p0: int, p1: int) -> torch.Tensor:
        a, b = int(self.pos_start[p0]), int(self.pos_start[p1])
        vectors = self.vectors_of(a, b)
        block = torch.zeros(p1 - p0, self.kmax, vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
        block[self.positions[a:b] - p0, self.rank[a:b]] = vectors
        return block

    def contract(self, grad: torch.Tensor, out: torch.Tensor, budget: int) -> None:
        """``out[:, start:stop]`` = edges of this layer's features from ``grad [B, n, d]``."""
        if not self.kmax:
            return
        batch, _, d = grad.shape
        step = max(1, budget // max(1, self.kmax * (d + batch)))
        for p0 in range(0, self.n, step):
            p1 = min(self.n, p0 + step)
            a, b = int(self.pos_start[p0]), int(self.pos_start[p1])
            if a == b:
                continue
            block = self.block[p0:p1] if self.block is not None else self.build(p0, p1)
            products = torch.bmm(grad[:, p0:p1].transpose(0, 1), block.transpose(1, 2))  # [P, B, kmax]
            out[:, self.start + a:self.start + b] = products[self.positions[a:b] - p0, :, self.rank[a:b]].T


@dataclass
class Rows:
    """Computed rows: ``matrix [rows, columns]`` and which node each row belongs to."""

    matrix: torch.Tensor
    row_nodes: torch.Tensor  #: [rows] node index (features: index into active; logits: columns..)
    selected: torch.Tensor  #: [k] indices of active features that got rows, ascending
    n_active: int
    n_positions: int
    n_layers: int
    n_targets: int


def partial_influence(matrix: torch.Tensor, row_nodes: torch.Tensor, weights: torch.Tensor,
                      n_columns: int, max_iter: int = 1024) -> torch.Tensor:
    """Influence on the targets of every column node, from the rows computed so far.

    ``weights`` are the target weights of the rows whose nodes are targets (the last
    ``len(weights)`` node indices). Influence flows back through the row-normalised
    absolute edge weights until it leaves the rows (a DAG, so it stops).
    """
    norm = matrix.abs()
    norm /= norm.sum(dim=1, keepdim=True).clamp(min=1e-10)
    total = torch.zeros(n_columns + len(weights), dtype=matrix.dtype, device=matrix.device)
    current = torch.zeros_like(total)
    current[n_columns:] = weights.to(matrix.dtype)
    for _ in range(max_iter):
        current_cols = current[row_nodes] @ norm
        current = torch.zeros_like(total)
        current[:n_columns] = current_cols
        if not bool(current.any()):
            return total[:n_columns]
        total += current
    raise RuntimeError("influence did not settle: the rows contain a cycle")


class Attributor:
    """Computes rows for logits and features of one prompt."""

    def __init__(self, replacement: LocalReplacement, transcoders: TranscoderSet,
                 active: ActiveFeatures, *, batch_size: int = 64):
        cache = replacement.cache
        if cache is None:
            raise RuntimeError("run the replacement model on the prompt first")
        self.rep = replacement
        self.active = active
        self.n = int(cache.embeddings.shape[0])
        self.n_layers = replacement.n_layers
        self.m = len(active)
        self.columns = self.m + (self.n_layers + 1) * self.n
        self.batch_size = max(1, int(batch_size))
        dtype, device = replacement.dtype, replacement.device
        parts = [transcoder_parts(transcoders, layer) for layer in range(self.n_layers)]
        self.w_enc = [p[0].to(device, dtype) for p in parts]
        self.w_dec = [p[1].to(device, dtype) for p in parts]
        self.w_skip = [p[2].to(device, dtype) if p[2] is not None else None for p in parts]
        counts = torch.bincount(active.layer, minlength=self.n_layers).tolist()
        bounds = [0]
        for count in counts:
            bounds.append(bounds[-1] + count)
        itemsize = torch.finfo(dtype).bits // 8
        layouts = [LayerSources(active, slice(bounds[l], bounds[l + 1]), self.n, self.w_dec[l], dtype, False)
                   for l in range(self.n_layers)]
        cache = sum(src.nbytes(replacement.d_model, itemsize) for src in layouts) <= SOURCE_CACHE_BYTES
        if cache:
            for src in layouts:
                src.block = src.build(0, self.n) if src.kmax else None
        self.sources = layouts

    # -- one batch ---------------------------------------------------------------------
    def _rows(self, batch: int, top_layer: int, final: torch.Tensor | None,
              inject_features: torch.Tensor | None) -> torch.Tensor:
        rep, active, cache = self.rep, self.active, self.rep.cache
        out = torch.zeros(batch, self.columns, dtype=rep.dtype, device=rep.device)
        rows = torch.arange(batch, device=rep.device)

        def inject(layer: int, mid: torch.Tensor) -> None:
            if inject_features is None:
                return
            mask = active.layer[inject_features] == layer
            if not bool(mask.any()):
                return
            idx = inject_features[mask]
            direction = self.w_enc[layer][:, active.local[idx]].T  # [k, d]
            pos = active.position[idx]
            scale = rep.mlp_norm_w[layer] * cache.mlp_scale[layer][pos][:, None]
            mid[rows[mask], pos] += direction * scale

        def read(layer: int, grad: torch.Tensor) -> None:
            self.sources[layer].contract(grad, out, CONTRACT_ELEMENTS)
            base = self.m + layer * self.n
            out[:, base:base + self.n] = torch.einsum("bpd,pd->bp", grad, active.errors[layer])

        def skip(layer: int, grad: torch.Tensor) -> torch.Tensor | None:
            w = self.w_skip[layer]
            return None if w is None else grad @ w

        embed_grad = rep.sweep(top_layer, inject, read, batch, skip, final=final)
        base = self.m + self.n_layers * self.n
        out[:, base:] = torch.einsum("bpd,pd->bp", embed_grad, cache.embeddings)
        return out

    def target_rows(self, targets: Sequence[Target]) -> torch.Tensor:
        """Rows of the targets (read after the final norm at the last position)."""
        directions = torch.stack([t.direction for t in targets]).to(self.rep.device, self.rep.dtype)
        chunks = []
        for start in range(0, len(targets), self.batch_size):
            part = directions[start:start + self.batch_size]
            final = self.rep.final_gradient(part)
            chunks.append(self._rows(part.shape[0], self.n_layers - 1, final, None))
        return torch.cat(chunks)

    def feature_rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows of the active features ``indices`` (their pre-activations)."""
        top = int(self.active.layer[indices].max())
        return self._rows(len(indices), top, None, indices.to(self.rep.device))

    # -- the whole graph -----------------------------------------------------------------
    def run(self, targets: Sequence[Target], max_feature_nodes: int, *, refresh: int = 4,
            show_progress: bool = True) -> Rows:
        """Rows for the targets and up to ``max_feature_nodes`` features (see the docstring)."""
        if max_feature_nodes < 0:
            raise FeaturelensError(f"--max-feature-nodes must be >= 0, got {max_feature_nodes}.")
        k = min(max_feature_nodes, self.m)
        n_rows = k + len(targets)
        size = n_rows * self.columns * torch.finfo(self.rep.dtype).bits // 8
        if size > ROW_BYTES_LIMIT:
            raise FeaturelensError(
                f"This graph needs {size / 2**30:.1f} GiB of edge rows ({n_rows:,} rows x {self.columns:,} "
                f"nodes: {self.m:,} active features on {self.n} tokens); lower --max-feature-nodes or "
                "shorten the prompt.")
        matrix = torch.zeros(n_rows, self.columns, dtype=self.rep.dtype)
        row_nodes = torch.zeros(n_rows, dtype=torch.long)
        weights = torch.tensor([t.weight for t in targets], dtype=self.rep.dtype)
        matrix[:len(targets)] = self.target_rows(targets).cpu()
        row_nodes[:len(targets)] = torch.arange(len(targets)) + self.columns
        visited = torch.zeros(self.m, dtype=torch.bool)
        filled = len(targets)
        bar = progress(total=k, desc="graph: feature rows", unit="row", enabled=show_progress)
        try:
            while filled - len(targets) < k:
                remaining = k - (filled - len(targets))
                if k == self.m:
                    pending = torch.arange(self.m)
                else:
                    influence = partial_influence(matrix[:filled], row_nodes[:filled], weights, self.columns)
                    order = torch.argsort(influence[:self.m], descending=True, stable=True)
                    pending = order[~visited[order]][:min(remaining, refresh * self.batch_size)]
                for start in range(0, len(pending), self.batch_size):
                    idx = pending[start:start + self.batch_size]
                    # Batches sorted by layer start their sweeps lower on average.
                    rows = self.feature_rows(idx.to(self.rep.device)).cpu()
                    matrix[filled:filled + len(idx)] = rows
                    row_nodes[filled:filled + len(idx)] = idx
                    visited[idx] = True
                    filled += len(idx)
                    bar.update(len(idx))
        finally:
            bar.close()
        return Rows(matrix=matrix, row_nodes=row_nodes, selected=torch.nonzero(visited).flatten(),
                    n_active=self.m, n_positions=self.n, n_layers=self.n_layers, n_targets=len(targets))
