"""Pruning, targets, the store round trip and joins, and the `featurelens graph` command."""

from __future__ import annotations


import polars as pl
import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.graphs import build_graph, load_graph, parse_target, save_graph
from featurelens.graphs.pruning import Adjacency, influence, normalise, prune, scores
from tests.graphs.graph_fixtures import tiny_graph_parts


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    return tiny_graph_parts(tiny_model_dir, skip=False)


# -- targets ----------------------------------------------------------------------------

def test_targets_parse_tokens_and_differences(parts):
    _, tokenizer, _ = parts
    the = tokenizer.encode(" the", add_special_tokens=False)
    cap = tokenizer.encode("The", add_special_tokens=False)
    assert len(the) == len(cap) == 1
    assert parse_target(" the", tokenizer) == (the[0], None)
    assert parse_target(" the-The", tokenizer) == (the[0], cap[0])
    with pytest.raises(FeaturelensError, match="neither one token"):
        parse_target(" fox jumps over", tokenizer)
    with pytest.raises(FeaturelensError, match="from itself"):
        parse_target(" the- the", tokenizer)


def test_salient_targets_stop_at_the_cumulative_probability(parts):
    model, tokenizer, transcoders = parts
    from featurelens.graphs.targets import resolve_targets

    logits = torch.tensor([4.0, 3.0, 1.0, 0.0, -1.0])
    unembed = torch.randn(5, 3)
    probs = torch.softmax(logits, 0)
    picked = resolve_targets(None, logits=logits, unembed=unembed, tokenizer=tokenizer, desired_probability=0.9)
    # The fewest top tokens whose cumulative probability reaches 0.9.
    need = int((torch.cumsum(probs, 0) < 0.9).sum()) + 1
    assert [t.token_id for t in picked] == list(range(need))
    assert picked[0].weight == pytest.approx(float(probs[0]))
    torch.testing.assert_close(picked[0].direction, unembed[0] - unembed.mean(0))
    capped = resolve_targets(None, logits=logits, unembed=unembed, tokenizer=tokenizer, desired_probability=1.0,
                             max_logits=2)
    assert len(capped) == 2


# -- pruning ----------------------------------------------------------------------------

def _chain_graph() -> Adjacency:
    """2 features, 1 layer x 2 positions of errors, 2 tokens, 1 target.

    Nodes: f0, f1, e(0,0), e(0,1), t0, t1, logit. The logit reads f0 strongly, f1 weakly,
    an error and a token; f0 reads token 1; f1 reads token 0."""
    rows = torch.zeros(3, 7, dtype=torch.float64)
    rows[0, 5] = 2.0  # f0 <- t1
    rows[1, 4] = 1.0  # f1 <- t0
    rows[2, 0], rows[2, 1], rows[2, 3], rows[2, 5] = 8.0, 0.5, 1.0, -0.5  # logit <- f0, f1, e(0,1), t1
    return Adjacency(rows=rows, n_features=2, n_layers=1, n_positions=2, weights=torch.tensor([1.0]))


def test_influence_follows_paths_through_normalised_weights():
    adj = _chain_graph()
    norm = normalise(adj.rows)
    got = influence(norm, adj.row_nodes, adj.target_weights())
    # logit's inputs: f0 8/10, f1 .5/10, e .1, t1 .05 directly; then f0 passes all to t1, f1 to t0.
    expected = torch.tensor([0.8, 0.05, 0.0, 0.1, 0.05, 0.05 + 0.8, 0.0], dtype=torch.float64)
    torch.testing.assert_close(got, expected)
    replacement, completeness = scores(adj)
    assert replacement == pytest.approx(0.9 / (0.9 + 0.1))
    # every node's input is error-free but the logit's (0.9 of it), weighted by influence + target weight.
    out = expected + adj.target_weights()
    assert completeness == pytest.approx(float((out.sum() - 0.1 * out[6]) / out.sum()))


def test_pruning_keeps_the_influential_nodes_and_always_tokens_and_targets():
    adj = _chain_graph()
    pruned = prune(adj, node_threshold=0.8, edge_threshold=0.98)
    kept = pruned.node_mask.tolist()
    # f0 (0.8) and t1 (0.85) hold 0.8 of the influence; f1 and the errors fall; tokens/logit stay.
    assert kept == [True, False, False, False, True, True, True]
    # The logit -> f0 and f0 -> t1 edges survive; edges from pruned nodes do not.
    assert bool(pruned.edge_mask[0, 5]) and bool(pruned.edge_mask[2, 0])
    assert not bool(pruned.edge_mask[2, 1]) and not bool(pruned.edge_mask[1, 4])
    everything = prune(adj, node_threshold=1.0, edge_threshold=1.0)
    assert bool(everything.node_mask[:2].all())
    with pytest.raises(FeaturelensError, match="between 0 and 1"):
        prune(adj, node_threshold=1.5)


def test_max_feature_nodes_picks_the_most_influential_features(parts):
    model, tokenizer, transcoders = parts
    full = build_graph(model, tokenizer, transcoders, "The lazy dog 123", max_feature_nodes=10_000,
                       dtype=torch.float64, show_progress=False, max_logits=2)
    few = build_graph(model, tokenizer, transcoders, "The lazy dog 123", max_feature_nodes=7,
                      dtype=torch.float64, show_progress=False, max_logits=2, batch_size=2)
    assert len(few.selected) == 7 < len(full.active)
    assert sum(1 for n in few.nodes if n["kind"] == "feature") == 7
    # With 7 to pick in one round, they are the features the logit rows weigh most.
    m = len(full.active)
    logit_rows = normalise(full.adjacency.rows[m:])
    direct = (full.adjacency.weights @ logit_rows)[:m]
    assert set(torch.argsort(direct, descending=True)[:7].tolist()) == set(few.selected.tolist())


# -- store --------------------------------------------------------------------------------

def test_graph_round_trips_through_the_store_and_joins_features(parts, store):
    model, tokenizer, transcoders = parts
    graph = build_graph(model, tokenizer, transcoders, "The quick brown fox", max_feature_nodes=10_000,
                        dtype=torch.float64, show_progress=False, targets=[" the"])
    graph_id = save_graph(store, graph, dictionary_id="set-1", model_id="tiny")
    assert save_graph(store, graph, dictionary_id="set-1", model_id="tiny") == graph_id  # replaced, not doubled
    stored = load_graph(store, graph_id)
    assert stored.graph["prompt"] == "The quick brown fox"
    assert stored.graph["targets"][0]["token"] == " the"
    assert stored.nodes.height == len(graph.nodes)
    assert stored.edges.height == len(graph.edges) > 0
    kinds = stored.nodes.group_by("kind").len().sort("kind")
    n = len(graph.input_ids)
    assert dict(zip(kinds["kind"], kinds["len"])) == {
        "embedding": n, "error": 2 * n, "feature": len(graph.selected), "logit": 1}
    # Every stored edge joins two kept nodes; weights equal the adjacency's entries.
    ids = {row["node_id"]: j for j, row in enumerate(graph.nodes)}
    kept = set(stored.nodes.filter(pl.col("kept"))["node_id"])
    row_of = {int(node): r for r, node in enumerate(graph.adjacency.row_nodes.tolist())}
    for edge in stored.edges.head(50).iter_rows(named=True):
        assert edge["source"] in kept and edge["target"] in kept
        assert edge["weight"] == graph.adjacency.rows[row_of[ids[edge["target"]]], ids[edge["source"]]].item()
    # Feature nodes join the set's features and explanations on (dictionary_id, feature).
    feature_node = stored.nodes.filter(pl.col("kind") == "feature").row(0, named=True)
    store.insert("features", pl.DataFrame([{
        "dictionary_id": "set-1", "feature": feature_node["feature"], "corpus_id": "c", "n_tokens": 10,
        "fire_count": 3, "density": 0.3}]))
    joined = store.sql(
        "SELECT n.node_id, f.density FROM graph_nodes n JOIN graphs g USING (graph_id) "
        "JOIN features f ON f.dictionary_id = g.dictionary_id AND f.feature = n.feature WHERE n.graph_id = ?",
        [graph_id])
    same = stored.nodes.filter(pl.col("feature") == feature_node["feature"])["node_id"]
    assert sorted(joined["node_id"].to_list()) == sorted(same.to_list())
    assert feature_node["node_id"] == (f"{feature_node['layer']}_{feature_node['feature']}_"
                                       f"{feature_node['position']}")
    with pytest.raises(FeaturelensError, match="no graph"):
        load_graph(store, "g-missing")


def test_nodes_carry_the_best_scored_label(parts, store):
    from featurelens.graphs import label_nodes

    model, tokenizer, transcoders = parts
    graph = build_graph(model, tokenizer, transcoders, "The quick brown fox", max_feature_nodes=10_000,
                        dtype=torch.float64, show_progress=False, max_logits=1)
    graph_id = save_graph(store, graph, dictionary_id="set-1", model_id="tiny")
    features = sorted({n["feature"] for n in graph.nodes if n["kind"] == "feature"})
    a, b = features[:2]
    store.insert("explanations", pl.DataFrame([
        {"explanation_id": "e1", "dictionary_id": "set-1", "feature": a, "explainer": "token-activations",
         "llm": "openai:x", "text": "worse label"},
        {"explanation_id": "e2", "dictionary_id": "set-1", "feature": a, "explainer": "token-activations",
         "llm": "openai:y", "text": "better label"},
        {"explanation_id": "e3", "dictionary_id": "set-1", "feature": b, "explainer": "token-lookup",
         "llm": "offline:none", "text": "unscored"},
    ]))
    store.insert("scores", pl.DataFrame([
        {"score_id": "s1", "explanation_id": "e1", "dictionary_id": "set-1", "feature": a, "scorer": "simulation",
         "llm": "x", "score": 0.2, "status": "ok"},
        {"score_id": "s2", "explanation_id": "e2", "dictionary_id": "set-1", "feature": a, "scorer": "detection",
         "llm": "x", "score": 0.7, "status": "ok"},
        {"score_id": "s3", "explanation_id": "e1", "dictionary_id": "set-1", "feature": a, "scorer": "fuzzing",
         "llm": "x", "score": None, "status": "undefined"},
    ]))
    counts = label_nodes(store, graph_id)
    assert counts.from_store == 2 and counts.looked_up == 0 and counts.unlabelled == len(features) - 2
    got = store.sql("SELECT feature, label, label_score, label_source FROM graph_nodes WHERE graph_id = ? "
                    "AND label IS NOT NULL", [graph_id])
    by_feature = {r["feature"]: r for r in got.iter_rows(named=True)}
    assert by_feature[a]["label"] == "better label" and by_feature[a]["label_score"] == 0.7
    assert by_feature[a]["label_source"] == "token-activations:openai:y"
    assert by_feature[b]["label"] == "unscored" and by_feature[b]["label_score"] is None
    assert set(by_feature) == {a, b}
