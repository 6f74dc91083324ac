"""Edge weights against direct effects measured by perturbing the linearised model.

The reference here is independent of featurelens.graphs: the real transformers modules
run forward with their attention patterns and RMSNorm scales frozen at the clean
pass's values (a custom attention function and norm hooks written below) and every MLP
output held at its clean value (plus the transcoder's skip path, which stays live). The
direct effect of a source on a target is the change of the target's input when the
source's vector is added where it writes: exact for a linear model, so edges must agree
to float64 rounding.
"""

from __future__ import annotations

import torch
import pytest

from featurelens.graphs.build import build_graph
from tests.graphs.graph_fixtures import tiny_graph_parts

ATTENTION_NAME = "featurelens_frozen_test"


class FrozenModel:
    """The model made linear around one prompt, by hooks on its own modules."""

    def __init__(self, model, ids: torch.Tensor, transcoders):
        from transformers import AttentionInterface

        self.model, self.ids, self.transcoders = model, ids.reshape(1, -1), transcoders
        self.patterns: dict[int, torch.Tensor] = {}
        self.record = True
        frozen = self

        def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
            groups = query.shape[1] // key.shape[1]
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)
            if frozen.record:
                scores = query @ key.transpose(2, 3) * scaling
                n = scores.shape[-1]
                scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
                frozen.patterns[module.layer_idx] = torch.softmax(scores, dim=-1)
            probs = frozen.patterns[module.layer_idx]
            return (probs @ value).transpose(1, 2).contiguous(), probs

        AttentionInterface.register(ATTENTION_NAME, attention)
        model.config._attn_implementation = ATTENTION_NAME
        self.norm_scale: dict[str, torch.Tensor] = {}
        self.mlp_in: dict[int, torch.Tensor] = {}
        self.mlp_out: dict[int, torch.Tensor] = {}
        self.handles = []
        for name, module in model.named_modules():
            if name.endswith("layernorm") or name == "model.norm":
                self.handles.append(module.register_forward_hook(self._norm_hook(name)))
        for layer, block in enumerate(model.model.layers):
            self.handles.append(block.mlp.register_forward_hook(self._mlp_hook(layer)))
        self.handles.append(model.model.embed_tokens.register_forward_hook(self._embed_hook))
        self.perturb: dict[tuple[str, int], torch.Tensor] = {}
        with torch.no_grad():
            self.clean = self.forward()
        self.record = False

    def _norm_hook(self, name):
        def hook(module, args, output):
            x = args[0]
            if self.record:
                self.norm_scale[name] = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
            return module.weight * x * self.norm_scale[name]
        return hook

    def _mlp_hook(self, layer):
        def hook(module, args, output):
            x = args[0]
            if self.record:
                self.mlp_in[layer], self.mlp_out[layer] = x.clone(), output.clone()
                return output
            out = self.mlp_out[layer].clone()
            skip = getattr(self.transcoders.transcoder(layer), "W_skip", None)
            if skip is not None:
                out = out + (x - self.mlp_in[layer]) @ skip.T
            if ("mlp", layer) in self.perturb:
                out = out + self.perturb[("mlp", layer)]
            return out
        return hook

    def _embed_hook(self, module, args, output):
        if ("embed", 0) in self.perturb:
            return output + self.perturb[("embed", 0)]
        return output

    def forward(self):
        hidden = self.model(input_ids=self.ids, output_hidden_states=True, use_cache=False)
        return {"final": hidden.hidden_states[-1][0],
                "mlp_in": {layer: x[0].clone() for layer, x in self.mlp_in.items()}
                if self.record else None}

    def measure(self, where: tuple[str, int], position: int, vector: torch.Tensor, read) -> float:
        """Change of ``read(outputs)`` when ``vector`` is added at ``where``, ``position``."""
        n, d = self.ids.shape[1], vector.shape[0]
        delta = torch.zeros(1, n, d, dtype=vector.dtype)
        delta[0, position] = vector
        self.perturb = {where: delta}
        captured: dict[int, torch.Tensor] = {}
        handles = [block.mlp.register_forward_pre_hook(
            lambda module, args, layer=layer: captured.__setitem__(layer, args[0][0].clone()))
            for layer, block in enumerate(self.model.model.layers)]
        try:
            with torch.no_grad():
                out = self.forward()
        finally:
            for handle in handles:
                handle.remove()
            self.perturb = {}
        base = read(self.clean["final"], {layer: x[0] for layer, x in self.mlp_in.items()})
        return float(read(out["final"], captured) - base)

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.model.config._attn_implementation = "sdpa"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def graph_and_model(tiny_model_dir):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only wait on each other
    try:
        model, tokenizer, transcoders = tiny_graph_parts(tiny_model_dir, skip=True)
        graph = build_graph(model, tokenizer, transcoders, "The quick brown fox jumps over",
                            max_feature_nodes=10_000, dtype=torch.float64, show_progress=False, max_logits=3)
    finally:
        torch.set_num_threads(before)
    return model, tokenizer, transcoders, graph


def test_edges_are_direct_effects_in_the_linearised_model(graph_and_model):
    model, _, transcoders, graph = graph_and_model
    frozen = FrozenModel(model, torch.tensor(graph.input_ids), transcoders)
    try:
        adj, active = graph.adjacency, graph.active
        k = adj.n_features
        n, n_layers = len(graph.input_ids), adj.n_layers
        names = [row["node_id"] for row in graph.nodes]
        generator = torch.Generator().manual_seed(1)

        def source_effect(column: int, read) -> float:
            if column < k:
                i = int(graph.selected[column])
                layer, pos = int(active.layer[i]), int(active.position[i])
                tc = transcoders.transcoder(layer)
                vector = tc.W_dec[int(active.local[i])].detach() * active.activation[i]
                return frozen.measure(("mlp", layer), pos, vector, read)
            if column < k + n_layers * n:
                layer, pos = divmod(column - k, n)
                return frozen.measure(("mlp", layer), pos, active.errors[layer][pos], read)
            pos = column - k - n_layers * n
            return frozen.measure(("embed", 0), pos, frozen.clean_embed[pos], read)

        frozen.clean_embed = model.model.embed_tokens.weight[torch.tensor(graph.input_ids)].detach()
        checked = 0
        # Logit rows: the target reads its demeaned unembedding row after the final norm.
        for t, target in enumerate(graph.targets):
            row = adj.rows[k + t]
            direction = target.direction.to(torch.float64)

            def read_logit(final, _mlp_in, direction=direction):
                return final[-1] @ direction

            columns = torch.randperm(adj.n_nodes - adj.n_targets, generator=generator)[:8]
            for column in columns.tolist():
                expected = source_effect(column, read_logit)
                assert row[column].item() == pytest.approx(expected, rel=1e-7, abs=1e-9), names[column]
                checked += 1
        # Feature rows: the target reads its pre-activation at its layer's MLP input.
        layer1 = [j for j in range(k) if int(active.layer[graph.selected[j]]) == 1]
        for j in torch.tensor(layer1)[torch.randperm(len(layer1), generator=generator)[:4]].tolist():
            i = int(graph.selected[j])
            pos, local = int(active.position[i]), int(active.local[i])
            w_enc = transcoders.transcoder(1).W_enc[:, local].detach()

            def read_feature(_final, mlp_in, pos=pos, w_enc=w_enc):
                return mlp_in[1][pos] @ w_enc

            sources = torch.nonzero(adj.rows[j]).flatten()
            assert len(sources) > 0
            for column in sources[torch.randperm(len(sources), generator=generator)[:6]].tolist():
                expected = source_effect(column, read_feature)
                assert adj.rows[j, column].item() == pytest.approx(expected, rel=1e-7, abs=1e-9), names[column]
                checked += 1
            # No edge from later positions or from its own layer's features (causal, layered).
            for column in range(k):
                src = int(graph.selected[column])
                if int(active.position[src]) > pos or int(active.layer[src]) >= 1:
                    assert adj.rows[j, column] == 0
        assert checked >= 30
    finally:
        frozen.close()


def test_features_and_errors_rebuild_the_real_mlp_outputs(graph_and_model):
    model, _, transcoders, graph = graph_and_model
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = [block.mlp.register_forward_hook(
        lambda module, args, output, layer=layer: seen.__setitem__(layer, (args[0][0], output[0])))
        for layer, block in enumerate(model.model.layers)]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([graph.input_ids]))
    finally:
        for handle in handles:
            handle.remove()
    active = graph.active
    for layer in range(2):
        tc = transcoders.transcoder(layer)
        x, real = seen[layer]
        mask = active.layer == layer
        recon = torch.zeros_like(x)
        recon.index_add_(0, active.position[mask],
                         active.activation[mask, None] * tc.W_dec.detach()[active.local[mask]])
        recon = recon + tc.b_dec.detach() + x @ tc.W_skip.detach().T + active.errors[layer]
        # Position 0 carries no nodes: its MLP output is a constant of the graph.
        torch.testing.assert_close(recon[1:], real[1:], rtol=1e-10, atol=1e-10)
        assert not bool((active.position[mask] == 0).any())
        assert bool((active.errors[layer][0] == 0).all())


def test_chunked_paths_give_the_same_rows(graph_and_model, monkeypatch):
    """Long prompts recompute attention patterns and decoder blocks chunk by chunk instead of
    caching them: the rows must not change."""
    from featurelens.graphs import attribution, replacement

    model, tokenizer, transcoders, graph = graph_and_model
    monkeypatch.setattr(replacement, "PATTERN_CACHE_BYTES", 0)
    monkeypatch.setattr(replacement, "PATTERN_CHUNK_ELEMENTS", 64)  # two query positions at a time (4 heads)
    monkeypatch.setattr(attribution, "SOURCE_CACHE_BYTES", 0)
    monkeypatch.setattr(attribution, "CONTRACT_ELEMENTS", 3000)  # a few positions at a time
    again = build_graph(model, tokenizer, transcoders, graph.input_ids, max_feature_nodes=10_000,
                        dtype=torch.float64, show_progress=False, max_logits=3, batch_size=5)
    torch.testing.assert_close(again.adjacency.rows, graph.adjacency.rows, rtol=1e-12, atol=1e-14)
    assert torch.equal(again.pruned.node_mask, graph.pruned.node_mask)
