"""A real store holding a small attribution graph over a real transcoder set, for the graph
page, the Neuronpedia graph export and graph interventions.

The set (random circuit-tracer per-layer files for the tiny test Llama) is extracted into
the store as usual, so its features have examples; the graph rows are written through the
store's own tables (migration 0008) with nodes that are truly active on the prompt: feature
node activations are the set's own, so an intervention on one moves the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch
import yaml
from safetensors.torch import save_file

D_T = 24
GRAPH_ID = "graph-test-1"
PROMPT = "def add(x, y): return x"


def write_ct_set(folder: Path, d_model: int = 32, n_layers: int = 2, seed: int = 0) -> Path:
    """A random circuit-tracer per-layer set for the tiny model (ReLU, biased to fire often)."""
    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for layer in range(n_layers):
        save_file({"W_enc": torch.randn(D_T, d_model, generator=gen) / d_model**0.5,
                   "b_enc": torch.full((D_T,), 0.05), "W_dec": torch.randn(D_T, d_model, generator=gen) * 0.5,
                   "b_dec": torch.zeros(d_model)}, str(folder / f"layer_{layer}.safetensors"))
        names.append(f"layer_{layer}.safetensors")
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "hook_mlp_out", "transcoders": names}))
    return folder


@dataclass
class GraphStore:
    path: Path
    dictionary_id: str
    graph_id: str
    feature_nodes: list[dict]  #: the feature nodes written (node_id, layer, feature, position, activation)
    kept_ids: set[str]
    pruned_id: str  #: a feature node with kept = false
    logit_ids: list[str]
    target_ids: list[int]


def build_graph_store(store_path: Path, model_dir: Path, work: Path) -> GraphStore:
    from featurelens.core.extraction import ExtractSpec, extract
    from featurelens.core.host.manager import create
    from featurelens.core.store.database import Store
    from featurelens.plugins.formats.transcoder_sets import CircuitTracerFormat

    set_dir = write_ct_set(work / "ct")
    result = extract(ExtractSpec(hookpoint=None, model=str(model_dir), dictionary=str(set_dir), tokens=512,
                                 context=32, batch_size=8, device="cpu", top_k=3, n_quantile=4,
                                 quantile_bins_count=2, n_random=2, split="all", dictionary_name="tiny-set"),
                     store=store_path, progress=False)
    backend = create("model_backend", "hf", str(model_dir), device="cpu")
    tset = CircuitTracerFormat().load(str(set_dir))
    ids = backend.tokenizer(PROMPT, return_tensors="pt").input_ids
    tokens = [backend.tokenizer.decode([t]) for t in ids[0].tolist()]
    n = len(tokens)
    hooks = tset.hookpoints
    acts = backend.run(ids, hooks)
    with torch.no_grad():
        logits = backend.run_full(ids)[0, -1].float()
    probs = torch.softmax(logits, dim=-1)
    top = probs.topk(2)
    nodes, edges, features = [], [], []
    for pos, (tok_id, tok) in enumerate(zip(ids[0].tolist(), tokens)):
        nodes.append({"node_id": f"E_{tok_id}_{pos}", "kind": "embedding", "layer": -1, "position": pos,
                      "feature": None, "token": tok, "activation": None, "influence": None, "kept": True})
    for layer in tset.layers:
        codes = tset.transcoder(layer).encode(acts[hooks[layer]][0])  # [n, D_T]
        for pos in (n - 2, n - 1):
            values, local = codes[pos].topk(2)
            for value, idx in zip(values.tolist(), local.tolist()):
                if value <= 0:
                    continue
                feature = tset.global_index(layer, idx)
                node_id = f"{layer}_{feature}_{pos}"
                if any(f["node_id"] == node_id for f in features):
                    continue
                features.append({"node_id": node_id, "layer": layer, "feature": feature, "position": pos,
                                 "activation": value})
        nodes.append({"node_id": f"{layer}_error_{n - 1}", "kind": "error", "layer": layer, "position": n - 1,
                      "feature": None, "token": tokens[-1], "activation": None, "influence": 0.05, "kept": True})
    assert len(features) >= 4, "the random set should have active features on the prompt"
    pruned = features[-1]["node_id"]
    for rank, f in enumerate(features):
        nodes.append({"node_id": f["node_id"], "kind": "feature", "layer": f["layer"], "position": f["position"],
                      "feature": f["feature"], "token": tokens[f["position"]], "activation": f["activation"],
                      "influence": 0.5 / (rank + 1), "kept": f["node_id"] != pruned,
                      "label": f"label <b>{rank}</b> of {f['node_id']}" if rank < 3 else None,
                      "label_score": 0.5 if rank < 3 else None,
                      "label_source": "token-lookup:offline:none" if rank < 3 else None})
    logit_ids = []
    for tok_id, p in zip(top.indices.tolist(), top.values.tolist()):
        node_id = f"{len(tset.layers)}_{tok_id}_{n - 1}"
        logit_ids.append(node_id)
        nodes.append({"node_id": node_id, "kind": "logit", "layer": len(tset.layers), "position": n - 1,
                      "feature": None, "token": backend.tokenizer.decode([tok_id]), "activation": p,
                      "influence": None, "kept": True})
    gen = torch.Generator().manual_seed(1)
    layer0 = [f for f in features if f["layer"] == 0]
    layer1 = [f for f in features if f["layer"] == 1]
    for f in layer0:
        edges.append((f"E_{ids[0, f['position']].item()}_{f['position']}", f["node_id"], 1.0))
    for a in layer0:
        for b in layer1:
            if a["position"] <= b["position"]:
                edges.append((a["node_id"], b["node_id"], float(torch.randn(1, generator=gen))))
    for f in features:
        for logit in logit_ids:
            edges.append((f["node_id"], logit, float(torch.randn(1, generator=gen))))
    edge_rows = [{"graph_id": GRAPH_ID, "source": s, "target": t, "weight": w,
                  "kept": pruned not in (s, t)} for s, t, w in edges]
    targets = [{"token": backend.tokenizer.decode([t]), "token_id": t, "probability": p, "logit": float(logits[t])}
               for t, p in zip(top.indices.tolist(), top.values.tolist())]
    with Store.open(store_path) as store, store.transaction():
        store.insert("graphs", pl.DataFrame([{
            "graph_id": GRAPH_ID, "dictionary_id": result.dictionary_id, "model_id": backend.model_id,
            "prompt": PROMPT, "prompt_tokens": tokens, "targets": json.dumps(targets), "node_threshold": 0.8,
            "edge_threshold": 0.98, "max_feature_nodes": 500, "replacement_score": 0.7,
            "completeness_score": 0.9}]))
        frame = pl.DataFrame([{**{"graph_id": GRAPH_ID, "label": None, "label_score": None, "label_source": None},
                               **row} for row in nodes],
                             schema_overrides={"feature": pl.Int32, "activation": pl.Float64,
                                               "influence": pl.Float64, "label_score": pl.Float64})
        store.insert("graph_nodes", frame)
        store.insert("graph_edges", pl.DataFrame(edge_rows))
    kept = {r["node_id"] for r in nodes if r["kept"]}
    return GraphStore(store_path, result.dictionary_id, GRAPH_ID, features, kept, pruned, logit_ids,
                      top.indices.tolist())

