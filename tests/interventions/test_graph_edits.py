"""Interventions chosen on a graph: a node's edit is exactly its feature's change times its
decoder row, added to its layer's MLP output at its position only; from the CLI and from the
graph page's server route."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.interventions.graph_edits import edited_logits, parse_node_edits, prompt_ids, resolve_edits
from graph_store import GraphStore

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def loaded(graph_store: GraphStore):
    import featurelens
    from featurelens.interventions.targets import load_target

    store = featurelens.open_store(graph_store.path, read_only=True)
    query = lambda sql, params: store.sql(sql, params).to_dicts()  # noqa: E731
    target = load_target(graph_store.dictionary_id, store_path=graph_store.path, device="cpu")
    graph = query("SELECT graph_id, prompt, prompt_tokens FROM graphs WHERE graph_id = ?", [graph_store.graph_id])[0]
    yield query, target, graph
    store.close()


def _manual(backend, layer: int, position: int, change: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Logits with ``change`` added to layer ``layer``'s MLP output at ``position``, by hand."""
    mlp = backend.model.model.layers[layer].mlp

    def hook(module, args, output):
        output = output.clone()
        output[0, position] += change
        return output

    handle = mlp.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return backend.run_full(ids)[0].float()
    finally:
        handle.remove()


@pytest.mark.parametrize("spec, factor", [({"ablate": ["{node}"]}, 0.0), ({"steer": ["{node}=x2"]}, 2.0)])
def test_a_node_edit_is_its_decoder_row_at_its_position(loaded, graph_store: GraphStore, spec, factor) -> None:
    query, target, graph = loaded
    tset, backend = target.dictionary, target.backend
    node = min((f for f in graph_store.feature_nodes if f["layer"] == 0), key=lambda f: f["position"])
    edits = parse_node_edits(**{k: [v[0].format(node=node["node_id"])] for k, v in spec.items()})
    resolved = resolve_edits(query, graph_store.graph_id, edits, tset)
    ids = prompt_ids(query, backend, {**graph, "graph_id": graph_store.graph_id})
    clean, edited = edited_logits(backend, tset, resolved, ids)
    layer, local = tset.locate(node["feature"])
    change = (factor - 1.0) * node["activation"] * tset.transcoder(layer).W_dec[local].detach()
    expected = _manual(backend, layer, node["position"], change, ids)
    torch.testing.assert_close(edited, expected, rtol=1e-4, atol=1e-4)
    p = node["position"]
    assert torch.equal(edited[:p], clean[:p])  # earlier positions cannot see the edit
    assert not torch.allclose(edited[p:], clean[p:])


def test_cli_reports_the_targets_moving(cli, graph_store: GraphStore) -> None:
    nodes = ",".join(f["node_id"] for f in graph_store.feature_nodes[:3])
    result = cli("intervene", graph_store.graph_id, "--ablate", nodes, "--store", graph_store.path,
                 "--device", "cpu", "--json", "--top", "4")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output[result.output.index("{"):])
    assert [r["token_id"] for r in body["targets"]] == graph_store.target_ids
    assert len(body["changed"]) == 4 and not ({r["token_id"] for r in body["changed"]} & set(graph_store.target_ids))
    assert any(abs(r["p_after"] - r["p_before"]) > 1e-6 for r in body["targets"])
    assert len(body["edits"]) == 3 and body["edits"][0].endswith("=ablate")
    table = cli("intervene", graph_store.graph_id, "--steer", f"{graph_store.feature_nodes[0]['node_id']}=x3",
                "--store", graph_store.path, "--device", "cpu")
    assert table.exit_code == 0 and "p before" in table.output and "=x3" in table.output


def test_bad_edits_are_one_sentence(cli, graph_store: GraphStore) -> None:
    embed = next(i for i in graph_store.kept_ids if i.startswith("E_"))
    for args, words in [(("--ablate", embed), "is an embedding node; only feature and error nodes"),
                        (("--ablate", "0_999_1"), "has no node '0_999_1'"),
                        (("--steer", "0_1_2=lots"), "is not a number"),
                        ((), "No edit given")]:
        result = cli("intervene", graph_store.graph_id, *args, "--store", graph_store.path, "--device", "cpu")
        assert result.exit_code != 0 and words in result.output, result.output
    missing = cli("intervene", "nope", "--ablate", "0_1_2", "--store", graph_store.path, "--device", "cpu")
    assert missing.exit_code != 0 and "There is no graph 'nope'" in missing.output
    with pytest.raises(FeaturelensError, match="edited twice"):
        parse_node_edits(["0_1_2", "0_1_2"])


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_page_server_runs_edits(graph_store: GraphStore, tiny_model_dir: Path) -> None:
    from featurelens.browser.server import url_of
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    server = make_steering_server(graph_store.path, "127.0.0.1", 0, model=str(tiny_model_dir), device="cpu")
    start_in_thread(server)
    try:
        base = url_of(server)
        status, data = _get(f"{base}graph/{graph_store.graph_id}/data.json")
        assert status == 200 and data["intervene"] == f"/graph/{graph_store.graph_id}/intervene"
        node = graph_store.feature_nodes[0]["node_id"]
        status, body = _get(f"{base}graph/{graph_store.graph_id}/intervene?ablate={node}")
        assert status == 200 and body["edits"] == [f"{node}=ablate"] and len(body["targets"]) == 2
        status, body = _get(f"{base}graph/{graph_store.graph_id}/intervene?steer={node}%3Dx2")
        assert status == 200 and body["edits"] == [f"{node}=x2"]
        status, body = _get(f"{base}graph/{graph_store.graph_id}/intervene?ablate=nope")
        assert status == 400 and "has no node 'nope'" in body["error"]
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()


def test_steering_a_set_feature_is_steering_its_layer(loaded, graph_store: GraphStore, cli) -> None:
    """`steer` and every FeatureEditor user take a set's global feature index: the same edit as
    the layer's transcoder with its local index."""
    from featurelens.interventions.hooks import FeatureEditor

    query, target, graph = loaded
    tset, backend = target.dictionary, target.backend
    feature = next(f for f in graph_store.feature_nodes if f["layer"] == 1)["feature"]
    layer, local = tset.locate(feature)
    ids = prompt_ids(query, backend, {**graph, "graph_id": graph_store.graph_id})
    with torch.no_grad(), FeatureEditor(backend, tset, {feature: 6.0}):
        through_set = backend.run_full(ids)[0]
    with torch.no_grad(), FeatureEditor(backend, tset.transcoder(layer), {local: 6.0},
                                        hookpoint=tset.layout.hookpoint_in(layer)):
        direct = backend.run_full(ids)[0]
    with torch.no_grad():
        clean = backend.run_full(ids)[0]
    torch.testing.assert_close(through_set, direct)
    assert not torch.allclose(through_set, clean)
    result = cli("steer", "--dictionary", graph_store.dictionary_id, "--feature", f"{feature}=+6", "--prompt",
                 "def f(x):", "--max-tokens", "4", "--temperature", "0", "--store", graph_store.path,
                 "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["edits"] == [f"{feature}=+6"]


def test_effects_of_set_features(cli, graph_store: GraphStore, tmp_path: Path) -> None:
    """`effects` on a set ablates each feature in its own layer (a copy of the store is written)."""
    import shutil

    import featurelens

    store = tmp_path / "copy.duckdb"
    shutil.copy(graph_store.path, store)
    result = cli("effects", "--dictionary", graph_store.dictionary_id, "--store", store, "--limit", "2",
                 "--windows", "2", "--device", "cpu", "--where", f"feature >= {graph_store.feature_nodes[0]['feature']}")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store, read_only=True) as s:
        rows = s.sql("SELECT feature, n_positions, mean_kl FROM feature_effects").to_dicts()
    assert len(rows) == 2 and all(r["n_positions"] > 0 and r["mean_kl"] >= 0 for r in rows)


def test_ablating_an_error_node_leaves_the_transcoders_reconstruction(loaded, graph_store: GraphStore) -> None:
    query, target, graph = loaded
    tset, backend = target.dictionary, target.backend
    n = len(graph["prompt_tokens"])
    node = f"0_error_{n - 1}"
    resolved = resolve_edits(query, graph_store.graph_id, parse_node_edits([node]), tset)
    ids = prompt_ids(query, backend, {**graph, "graph_id": graph_store.graph_id})
    clean, edited = edited_logits(backend, tset, resolved, ids)
    mlp = backend.model.model.layers[0].mlp
    seen = {}

    def read(module, args):
        seen["x"] = args[0]

    def write(module, args, output):
        output = output.clone()
        output[0, n - 1] = tset.transcoder(0)(seen["x"][0, n - 1:n])[0]
        return output

    handles = [mlp.register_forward_pre_hook(read), mlp.register_forward_hook(write)]
    try:
        with torch.no_grad():
            expected = backend.run_full(ids)[0].float()
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(edited, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(edited[:n - 1], clean[:n - 1]) and not torch.allclose(edited[-1], clean[-1])
    with pytest.raises(FeaturelensError, match="is an error node; it can be ablated"):
        resolve_edits(query, graph_store.graph_id, parse_node_edits(steer=[f"{node}=x2"]), tset)
