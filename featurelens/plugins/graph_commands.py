"""``featurelens graph``: an attribution graph of a prompt, stored with labelled nodes.

Registered through the ordinary ``register_commands`` hook like every built-in command.
The work is in :mod:`featurelens.graphs`; this module reads options, loads the model and
the transcoder set, and prints what was built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import featurelens
from featurelens.core.cli.options import store_option

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(graph_command)


@click.command("graph")
@click.option("--prompt", required=True, help="The text whose next token the graph explains.")
@click.option("--transcoders", "transcoders", required=True, metavar="SET",
              help="The transcoder set: its dictionary id in the store, a set folder (featurelens train "
                   "--layers, circuit-tracer layout) or a name.")
@click.option("--model", default=None,
              help="Model [default: the one the stored set was extracted from, else smollm2].")
@click.option("--target", "targets", multiple=True, metavar="TOKEN|A-B",
              help="Attribute this token's logit, or the difference of two tokens' logits (' Paris- London'); "
                   "repeatable [default: the top logits up to --logit-probability].")
@click.option("--logit-probability", default=0.95, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Without --target: the top logits until their cumulative probability reaches this.")
@click.option("--max-logits", default=10, show_default=True, type=click.IntRange(1, 100),
              help="Without --target: at most this many logits.")
@click.option("--node-threshold", default=0.8, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Keep the nodes holding this share of cumulative influence.")
@click.option("--edge-threshold", default=0.98, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Keep the edges holding this share of cumulative edge influence.")
@click.option("--max-feature-nodes", default=7500, show_default=True, type=click.IntRange(0, 1_000_000),
              help="Attribute at most this many features (the most influential first).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Backward passes computed together.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda:0...")
@click.option("--label-nodes", is_flag=True,
              help="Also explain and score the graph's features with --llm (the featurelens label engine).")
@click.option("--llm", default=None, metavar="PROVIDER:MODEL", help="With --label-nodes: who explains.")
@click.option("--explainer", default="token-activations", show_default=True, help="With --label-nodes.")
@click.option("--scorer", "scorers", multiple=True, default=("simulation",), show_default=True,
              help="With --label-nodes, repeatable.")
@click.option("--top", default=15, show_default=True, type=click.IntRange(0, 1000),
              help="Kept feature nodes to print, most influential first.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@store_option
def graph_command(prompt: str, transcoders: str, model: str | None, targets: tuple[str, ...],
                  logit_probability: float, max_logits: int, node_threshold: float, edge_threshold: float,
                  max_feature_nodes: int, batch_size: int, dtype: str, device: str, label_nodes: bool,
                  llm: str | None, explainer: str, scorers: tuple[str, ...], top: int, no_progress: bool,
                  store_path: Path | None) -> None:
    """Build the attribution graph of PROMPT's next token through a transcoder set.

    The graph (nodes, edges, pruning, replacement and completeness scores) is stored in
    graphs / graph_nodes / graph_edges; feature nodes carry their best-scored label.
    """
    import torch

    from featurelens.core.errors import FeaturelensError
    from featurelens.core.store.database import Store
    from featurelens.graphs import build_graph, label_nodes as write_labels, save_graph
    from featurelens.graphs.labels import explain_graph_features
    from featurelens.graphs.loading import load_transcoder_set, record_set

    if label_nodes and not llm:
        raise FeaturelensError("--label-nodes needs --llm PROVIDER:MODEL (e.g. --llm local:smollm2); "
                               "without it, nodes get stored and token-lookup labels only.")
    loaded = load_transcoder_set(transcoders, model=model, store_path=store_path, device=device)
    graph = build_graph(loaded.backend.model, loaded.backend.tokenizer, loaded.transcoders, prompt,
                        targets=list(targets) or None, node_threshold=node_threshold,
                        edge_threshold=edge_threshold, max_feature_nodes=max_feature_nodes,
                        desired_probability=logit_probability, max_logits=max_logits, batch_size=batch_size,
                        dtype=torch.float64 if dtype == "float64" else torch.float32,
                        show_progress=not no_progress)
    with Store.open(store_path) as store:
        record_set(store, loaded)
        graph_id = save_graph(store, graph, dictionary_id=loaded.dictionary_id, model_id=loaded.backend.model_id)
        lines = []
        if label_nodes:
            lines += explain_graph_features(store, graph_id, llm=llm or "", explainer=explainer,
                                            scorers=scorers)
        counts = write_labels(store, graph_id, show_progress=not no_progress)
        lines.append(counts.line())
        _report(store, graph, graph_id, lines, top)


def _report(store: Any, graph: Any, graph_id: str, lines: list[str], top: int) -> None:
    kinds = {}
    for node in graph.nodes:
        if node["kept"]:
            kinds[node["kind"]] = kinds.get(node["kind"], 0) + 1
    kept_edges = sum(1 for edge in graph.edges if edge["kept"])
    click.echo(f"graph {graph_id}: {len(graph.input_ids)} tokens, targets "
               + ", ".join(f"{t.label!r} ({t.value:.3g})" for t in graph.targets))
    click.echo(f"  kept {kinds.get('feature', 0)} of {len(graph.selected)} feature nodes "
               f"({len(graph.active)} active), {kinds.get('error', 0)} error nodes, {kept_edges} edges")
    click.echo(f"  replacement score {graph.replacement_score:.3f}, completeness score "
               f"{graph.completeness_score:.3f}")
    for line in lines:
        click.echo("  " + line)
    if top:
        rows = store.sql(
            "SELECT node_id, token, influence, label, label_score FROM graph_nodes WHERE graph_id = ? "
            "AND kind = 'feature' AND kept ORDER BY influence DESC, node_id LIMIT ?", [graph_id, top])
        for row in rows.iter_rows(named=True):
            score = "" if row["label_score"] is None else f" [{row['label_score']:.2f}]"
            click.echo(f"  {row['node_id']:>14} on {row['token']!r:12} influence {row['influence']:.3f}  "
                       f"{row['label'] or '(no label)'}{score}")
    click.echo(f"  SQL: SELECT * FROM graph_nodes WHERE graph_id = '{graph_id}' AND kept")
