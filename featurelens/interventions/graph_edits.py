"""Interventions chosen on an attribution graph: ablate or steer feature nodes, read how the
graph's target logits move.

A feature node ``L_F_P`` is feature ``F`` of the graph's transcoder set (layer ``L``'s
transcoder, local index ``F - offset(L)``) at prompt position ``P``. Each edit is a
:class:`~featurelens.interventions.hooks.FeatureEditor` on that layer's transcoder,
limited to position ``P``: the edit's change of the feature's activation times its
decoder row is added to layer ``L``'s MLP output there (the transcoder's error term and
every other feature untouched), and the model runs on, so later features and attention
respond as they would to a real change. Edits:

- ``ablate``: the feature reads 0 at its position;
- ``steer NODE=VALUE``: it reads ``VALUE``; ``NODE=xF``: ``F`` times the activation the
  graph recorded for the node (``x0`` is an ablation, ``x2`` doubles it).

An error node ``L_error_P`` can be ablated: layer ``L``'s MLP output at ``P`` becomes its
transcoder's reconstruction (features, skip path, bias), so what the transcoder misses there
is gone (feature edits at the same place then apply on top). Embedding and logit nodes are
not edited, nor cross-layer sets, whose features write to every later layer, which these
per-layer edits do not carry (refused in one sentence each).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.interventions.edits import Edit, finite_number
from featurelens.interventions.hooks import FeatureEditor, _model_and_resolver, attach

Query = Callable[[str, list[Any]], list[dict[str, Any]]]
#: Edits one request may carry (a graph page's pins, a command line).
MAX_EDITS = 256


@dataclass(frozen=True)
class NodeEdit:
    """What to do to one graph node: ``ablate``, or ``steer`` to ``value`` or by ``factor``."""

    node_id: str
    mode: str
    value: float | None = None
    factor: float | None = None

    def describe(self) -> str:
        if self.mode == "ablate":
            return f"{self.node_id}=ablate"
        return f"{self.node_id}=x{self.factor:g}" if self.factor is not None else f"{self.node_id}={self.value:g}"


def _finite(text: str, spec: str) -> float:
    number = finite_number(text)
    if number is None:
        raise FeaturelensError(f"In the steer {spec!r}, {text!r} is not a number; write NODE=3.5 (set the "
                               "activation) or NODE=x2 (twice the graph's activation).")
    return number


def parse_node_edits(ablate: Iterable[str] = (), steer: Iterable[str] = ()) -> list[NodeEdit]:
    """``--ablate NODE[,NODE...]`` and ``--steer NODE=VALUE|xFACTOR[,...]`` as edits."""
    out: list[NodeEdit] = []
    for group in ablate:
        out.extend(NodeEdit(node.strip(), "ablate") for node in str(group).split(",") if node.strip())
    for group in steer:
        for spec in (s.strip() for s in str(group).split(",") if s.strip()):
            node, sep, value = spec.partition("=")
            node, value = node.strip(), value.strip()
            if not sep or not node or not value:
                raise FeaturelensError(f"Cannot read the steer {spec!r}; write NODE=VALUE or NODE=xFACTOR, "
                                       "e.g. 3_1207_5=x2.")
            if value[:1] in "x×":
                out.append(NodeEdit(node, "steer", factor=_finite(value[1:], spec)))
            else:
                out.append(NodeEdit(node, "steer", value=_finite(value, spec)))
    if not out:
        raise FeaturelensError("No edit given; pass --ablate NODE or --steer NODE=VALUE with node ids of the graph.")
    if len(out) > MAX_EDITS:
        raise FeaturelensError(f"{len(out)} edits were given; at most {MAX_EDITS} fit in one intervention.")
    seen: set[str] = set()
    for edit in out:
        if edit.node_id in seen:
            raise FeaturelensError(f"Node {edit.node_id} is edited twice; give each node one edit.")
        seen.add(edit.node_id)
    return out


@dataclass
class ResolvedEdit:
    """A node edit as a feature edit: the layer's local feature at one position."""

    edit: NodeEdit
    layer: int
    position: int
    local: int  #: the feature's index in its layer's transcoder (-1 for an error node)
    target: float  #: the activation the feature is made to read
    kind: str = "feature"


@dataclass
class GraphIntervention:
    """How the edits moved the next-token prediction at the prompt's last position."""

    graph_id: str
    edits: list[str]
    targets: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)


def graph_row(query: Query, graph_id: str) -> dict[str, Any]:
    rows = query("SELECT graph_id, dictionary_id, model_id, prompt, prompt_tokens, CAST(targets AS VARCHAR) AS targets "
                 "FROM graphs WHERE graph_id = ?", [graph_id])
    if not rows:
        raise FeaturelensError(f"There is no graph {graph_id!r} in the store; list them with featurelens sql "
                               "\"SELECT graph_id, prompt FROM graphs\".")
    row = rows[0]
    row["targets"] = json.loads(row["targets"] or "[]")
    return row


def resolve_edits(query: Query, graph_id: str, edits: list[NodeEdit], tset: Any) -> list[ResolvedEdit]:
    """Each edit's node read from ``graph_nodes`` and checked (one sentence per problem)."""
    rows = query("SELECT node_id, kind, layer, position, feature, activation FROM graph_nodes "
                 "WHERE graph_id = ? AND node_id IN (SELECT unnest(?))", [graph_id, [e.node_id for e in edits]])
    nodes = {r["node_id"]: r for r in rows}
    if getattr(tset, "cross", None):
        raise FeaturelensError("The graph's transcoder set is cross-layer: its features write to every later "
                               "layer, and graph interventions edit one layer's output; use a per-layer set.")
    out = []
    for edit in edits:
        node = nodes.get(edit.node_id)
        if node is None:
            raise FeaturelensError(f"Graph {graph_id} has no node {edit.node_id!r}; node ids are in graph_nodes "
                                   "(feature nodes look like LAYER_FEATURE_POSITION).")
        if node["kind"] == "error":
            if edit.mode != "ablate":
                raise FeaturelensError(f"Node {edit.node_id} is an error node; it can be ablated (the MLP output "
                                       "there becomes the transcoder's reconstruction), not steered.")
            out.append(ResolvedEdit(edit, int(node["layer"]), int(node["position"]), -1, 0.0, "error"))
            continue
        if node["kind"] != "feature":
            raise FeaturelensError(f"Node {edit.node_id} is an {node['kind']} node; only feature and error nodes "
                                   "can be edited.")
        layer, local = tset.locate(int(node["feature"]))
        if layer != int(node["layer"]):
            raise FeaturelensError(f"Node {edit.node_id} says layer {node['layer']}, but feature {node['feature']} "
                                   f"of the set is in layer {layer}; the graph and the set disagree.")
        if edit.mode == "ablate":
            target = 0.0
        elif edit.factor is not None:
            target = edit.factor * float(node["activation"] or 0.0)
        else:
            target = float(edit.value)  # type: ignore[arg-type]
        out.append(ResolvedEdit(edit, layer, int(node["position"]), local, target))
    return out


class ErrorAblation:
    """Layer ``layer``'s MLP output at ``positions`` replaced by its transcoder's reconstruction
    of it: the graph's error nodes there removed."""

    def __init__(self, backend: Any, tset: Any, layer: int, positions: Iterable[int]):
        self.root, resolve = _model_and_resolver(backend)
        self.transcoder = tset.transcoder(layer)
        self.read = resolve(tset.layout.hookpoint_in(layer))
        self.write = resolve(tset.layout.hookpoint_out(layer))
        self.positions = sorted(set(positions))
        self._inputs: torch.Tensor | None = None
        self._handles: list[Any] = []

    def _read(self, x: torch.Tensor) -> torch.Tensor:
        self._inputs = x
        return x

    def _write(self, out: torch.Tensor) -> torch.Tensor:
        x, self._inputs = self._inputs, None
        keep = [p for p in self.positions if p < out.shape[1]]
        if x is None or not keep:
            return out
        rows = x[:, keep]
        weights = next(self.transcoder.parameters())
        recon = self.transcoder(rows.reshape(-1, rows.shape[-1]).to(weights.device, weights.dtype))
        out = out.clone()
        out[:, keep] = recon.reshape(*rows.shape[:-1], -1).to(out.device, out.dtype)
        return out

    def __enter__(self) -> "ErrorAblation":
        self._handles = [attach(self.root, self.read, self._read), attach(self.root, self.write, self._write)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._inputs = None


def editors(backend: Any, tset: Any, resolved: list[ResolvedEdit]) -> list[Any]:
    """Error ablations first (one per layer), then one feature editor per (layer, position),
    each limited to its position: hooks run in this order, so feature edits add to the
    reconstruction an error ablation put in place."""
    errors: dict[int, list[int]] = {}
    groups: dict[tuple[int, int], list[Edit]] = {}
    for r in resolved:
        if r.kind == "error":
            errors.setdefault(r.layer, []).append(r.position)
            continue
        mode = "ablate" if r.target == 0 else "clamp"
        groups.setdefault((r.layer, r.position), []).append(Edit(r.local, mode, r.target))
    out: list[Any] = [ErrorAblation(backend, tset, layer, positions) for layer, positions in sorted(errors.items())]
    out += [FeatureEditor(backend, tset.transcoder(layer), edits, positions=(position,),
                          hookpoint=tset.layout.hookpoint_in(layer))
            for (layer, position), edits in sorted(groups.items())]
    return out


def edited_logits(backend: Any, tset: Any, resolved: list[ResolvedEdit],
                  ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clean, edited)`` logits ``[n, vocab]`` of the prompt ``ids [1, n]``."""
    with torch.no_grad():
        clean = backend.run_full(ids)[0].float()
        with ExitStack() as stack:
            for editor in editors(backend, tset, resolved):
                stack.enter_context(editor)
            edited = backend.run_full(ids)[0].float()
    return clean, edited


def prompt_ids(query: Query, backend: Any, graph: dict[str, Any]) -> torch.Tensor:
    """``[1, n]``: the token ids the graph was built on, read from its embedding nodes
    (``E_<token id>_<position>``, one per position), so the prompt runs exactly as it was
    attributed whatever special token the graph builder put first; a graph without them
    has its prompt tokenised here, its length checked against the graph's."""
    n = len(graph["prompt_tokens"])
    rows = query("SELECT node_id, position FROM graph_nodes WHERE graph_id = ? AND kind = 'embedding'",
                 [graph["graph_id"]])
    by_position = {}
    for row in rows:
        token = row["node_id"].split("_")[1] if row["node_id"].count("_") >= 2 else ""
        if token.isdigit():
            by_position[int(row["position"])] = int(token)
    if sorted(by_position) == list(range(n)):
        return torch.tensor([[by_position[p] for p in range(n)]], device=backend.device)
    ids = backend.tokenizer(graph["prompt"], return_tensors="pt").input_ids.to(backend.device)
    if ids.shape[1] != n:
        raise FeaturelensError(f"The prompt of graph {graph['graph_id']} tokenises to {ids.shape[1]} tokens here "
                               f"but the graph has {n}, and its embedding nodes do not give every position's "
                               "token; load the model and tokenizer the graph was built with.")
    return ids


def intervene(query: Query, graph_id: str, edits: list[NodeEdit], *, backend: Any, tset: Any,
              top: int = 10) -> GraphIntervention:
    """Run the graph's prompt with and without ``edits``; the targets' and the most moved
    tokens' probabilities and logits at the last position (module docstring)."""
    graph = graph_row(query, graph_id)
    if graph["model_id"] != backend.model_id:
        raise FeaturelensError(f"Graph {graph_id} was built on {graph['model_id']}, but the loaded model is "
                               f"{backend.model_id}; load that model.")
    resolved = resolve_edits(query, graph_id, edits, tset)
    ids = prompt_ids(query, backend, graph)
    clean, edited = edited_logits(backend, tset, resolved, ids)
    before, after = clean[-1], edited[-1]
    p_before, p_after = torch.softmax(before, dim=-1), torch.softmax(after, dim=-1)

    def row(token_id: int, target: bool) -> dict[str, Any]:
        return {"token": backend.tokenizer.decode([token_id]), "token_id": token_id, "target": target,
                "p_before": float(p_before[token_id]), "p_after": float(p_after[token_id]),
                "logit_before": float(before[token_id]), "logit_after": float(after[token_id])}

    target_ids = [int(t["token_id"]) for t in graph["targets"] if isinstance(t, dict) and "token_id" in t]
    result = GraphIntervention(graph_id, [r.edit.describe() for r in resolved],
                               targets=[row(t, True) for t in target_ids])
    delta = (p_after - p_before).abs()
    if target_ids:
        delta[torch.tensor(target_ids, device=delta.device)] = -1.0
    for token_id in delta.topk(min(top, delta.numel())).indices.tolist():
        result.changed.append(row(int(token_id), False))
    return result


def format_intervention(result: GraphIntervention) -> str:
    """The result as a small table: targets first, then the most moved other tokens."""
    lines = [f"Graph {result.graph_id}, edits: {', '.join(result.edits)}",
             f"{'token':<16} {'p before':>9} {'p after':>9} {'change':>9} {'logit before':>13} {'logit after':>12}"]
    for row in result.targets + result.changed:
        name = repr(row["token"])[:14] + (" *" if row["target"] else "")
        lines.append(f"{name:<16} {row['p_before']:>9.4f} {row['p_after']:>9.4f} "
                     f"{row['p_after'] - row['p_before']:>+9.4f} {row['logit_before']:>13.3f} {row['logit_after']:>12.3f}")
    lines.append("* a target of the graph")
    return "\n".join(lines)
