"""featurelens.graphs against circuit-tracer 0.5.0 on SmolLM2 with random ReLU transcoders.

Same model folder (the embedded SmolLM2, converted), same transcoder files (30 random ReLU
transcoders of 128 features in circuit-tracer's per-layer layout, read by featurelens through
its circuit_tracer format), same token ids, 500 feature nodes chosen greedily from ~22,000
active ones: the same active features, the same chosen features, the same adjacency within
1e-4 relative, the same pruned node set and the same scores. circuit-tracer runs in its own venv (scripts/reference_circuit_tracer.sh) as a
subprocess; the test is skipped when that venv is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featurelens.testing.graph_reference import (
    circuit_tracer_python, reference_model_folder, run_circuit_tracer, write_random_set,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(circuit_tracer_python() is None,
                                                   reason="run scripts/reference_circuit_tracer.sh first")]

PROMPT = "The capital of France is Paris, and the capital of Italy is"


def test_same_graph_as_circuit_tracer(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from featurelens.core.model.embedded import embedded_model_path
    from featurelens.graphs import build_graph
    from featurelens.plugins.formats.transcoder_sets import CircuitTracerFormat

    source = embedded_model_path()
    folder = write_random_set(tmp_path / "set", n_layers=30, d_model=576, d_transcoder=128)
    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = [tokenizer.bos_token_id] + tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    ref = run_circuit_tracer(reference_model_folder(source, tmp_path / "model"), folder, ids,
                             tmp_path / "ref.safetensors", max_feature_nodes=500)

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    transcoders = CircuitTracerFormat().load(str(folder))
    graph = build_graph(model, tokenizer, transcoders, ids, max_feature_nodes=500, show_progress=False)

    # Same active features, in the same order (layer, position, index), same activations.
    ours = torch.stack([graph.active.layer, graph.active.position, graph.active.local], dim=1)
    assert torch.equal(ours, ref["active_features"])
    torch.testing.assert_close(graph.active.activation.float(), ref["activation_values"], rtol=1e-4, atol=1e-5)
    # Same features chosen for rows (the greedy order by partial influence, refreshed every 4 batches).
    assert torch.equal(graph.selected, ref["selected_features"])
    # Same targets.
    assert [t.token_id for t in graph.targets] == ref["logit_tokens"].tolist()
    # Same adjacency: our rows are its nonzero rows (features, then logits); the rest of it is zero.
    adjacency = ref["adjacency"].double()
    k, t = graph.adjacency.n_features, graph.adjacency.n_targets
    theirs = torch.cat([adjacency[:k], adjacency[-t:]])
    assert adjacency[k:-t].abs().sum() == 0
    scale = float(theirs.abs().max())
    difference = (graph.adjacency.rows.double() - theirs).abs()
    assert float(difference.max()) <= 1e-4 * scale
    torch.testing.assert_close(graph.adjacency.rows.double(), theirs, rtol=1e-4, atol=1e-4 * scale)
    # Same pruned node set, and the same scores.
    assert torch.equal(graph.pruned.node_mask, ref["node_mask"].bool())
    replacement, completeness = ref["scores"].tolist()
    assert graph.replacement_score == pytest.approx(replacement, rel=1e-4)
    assert graph.completeness_score == pytest.approx(completeness, rel=1e-4)
