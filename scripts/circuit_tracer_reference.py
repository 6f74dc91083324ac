"""Run circuit-tracer 0.5 on a model folder and a per-layer transcoder folder; write its graph.

Runs inside the reference venv that scripts/reference_circuit_tracer.sh builds (never in
featurelens's .venv: circuit-tracer pins transformers 4.x and nnsight 0.6). Used by the
slow test tests/graphs/test_circuit_tracer_reference.py and by benchmarks/graphs.py:

    python circuit_tracer_reference.py MODEL_DIR SET_DIR OUT.safetensors --ids 1,2,3 \
        [--max-feature-nodes N] [--batch-size B] [--node-threshold T] [--edge-threshold T]

SET_DIR holds layer_<l>.safetensors (W_enc [d_transcoder, d_model], b_enc, W_dec, b_dec).
OUT holds: active_features [m, 3] (layer, position, index), activation_values, selected_features,
adjacency, logit_tokens, logit_probabilities, node_mask, edge_mask, scores [2],
attribution_seconds [1], peak_rss_bytes [1].
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import save_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("transcoders")
    parser.add_argument("out")
    parser.add_argument("--ids", required=True)
    parser.add_argument("--max-feature-nodes", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--node-threshold", type=float, default=0.8)
    parser.add_argument("--edge-threshold", type=float, default=0.98)
    parser.add_argument("--max-logits", type=int, default=10)
    args = parser.parse_args()

    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    folder = Path(args.transcoders)
    paths = {int(p.stem.split("_")[1]): str(p) for p in folder.glob("layer_*.safetensors")}
    transcoders = load_transcoder_set(paths, scan="featurelens-reference", feature_input_hook="mlp.hook_in",
                                      feature_output_hook="hook_mlp_out", device=torch.device("cpu"))
    model = ReplacementModel.from_pretrained_and_transcoders(args.model, transcoders, backend="nnsight",
                                                             device=torch.device("cpu"))
    ids = [int(i) for i in args.ids.split(",")]
    start = time.perf_counter()
    graph = attribute(torch.tensor(ids), model, max_feature_nodes=args.max_feature_nodes,
                      batch_size=args.batch_size, max_n_logits=args.max_logits)
    seconds = time.perf_counter() - start
    pruned = prune_graph(graph, node_threshold=args.node_threshold, edge_threshold=args.edge_threshold)
    replacement, completeness = compute_graph_scores(graph)
    logit_ids = [t.vocab_idx if hasattr(t, "vocab_idx") else int(t) for t in graph.logit_targets]
    save_file({
        "active_features": graph.active_features.to(torch.int64).contiguous(),
        "activation_values": graph.activation_values.float().contiguous(),
        "selected_features": graph.selected_features.to(torch.int64).contiguous(),
        "adjacency": graph.adjacency_matrix.float().contiguous(),
        "logit_tokens": torch.tensor(logit_ids, dtype=torch.int64),
        "logit_probabilities": graph.logit_probabilities.float().contiguous(),
        "node_mask": pruned.node_mask.to(torch.uint8).contiguous(),
        "edge_mask": pruned.edge_mask.to(torch.uint8).contiguous(),
        "scores": torch.tensor([replacement, completeness], dtype=torch.float64),
        "attribution_seconds": torch.tensor([seconds], dtype=torch.float64),
        "peak_rss_bytes": torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024],
                                       dtype=torch.int64),
    }, args.out)


if __name__ == "__main__":
    main()
