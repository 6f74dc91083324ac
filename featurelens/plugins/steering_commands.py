"""Intervention commands: ``featurelens steer``, ``featurelens effects`` and
``featurelens intervene`` (edits chosen on an attribution graph), and the
``intervention`` scorer, registered through the ordinary plugin hooks."""

from __future__ import annotations

import json
from pathlib import Path

import click

import featurelens
from featurelens.core.cli.numbers import SEED, FiniteRange
from featurelens.core.cli.options import store_option
from featurelens.core.host.hookspecs import Register

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(steer_command)
    cli.add_command(effects_command)
    cli.add_command(intervene_command)


@featurelens.hookimpl
def register_scorers(register: Register) -> None:
    from featurelens.scorers.intervention import InterventionScorer

    register("intervention", InterventionScorer,
             description="can the explanation tell steered from unsteered continuations "
                         "(strength set for a fixed KL, arXiv 2410.13928); accuracy")


def _model_options(function):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--dictionary", required=True,
                     help="A dictionary id in the store, identity, a saved dictionary's path, "
                          "or a name: hf:<repo>[/<folder>], saelens:<release>/<sae_id>."),
        click.option("--model", default=None,
                     help="Model [default: the one the stored dictionary was extracted from, else smollm2]."),
        click.option("--hookpoint", default=None,
                     help="Where the dictionary reads [default: the stored dictionary's]."),
        click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
                     show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda:0..."),
        click.option("--backend", "backend_name", default="hf", show_default=True,
                     help="Model backend to load the model with (see featurelens plugins list); it must "
                          "offer the steering members (docs/plugins.md)."),
    ]):
        function = option(function)
    return function


@click.command("steer")
@_model_options
@click.option("--feature", "features", multiple=True,
              help="FEATURE=VALUE, repeatable: 123=+8 adds 8 x its decoder direction, 40=0 ablates, "
                   "7=clamp:3 clamps.")
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-tokens", default=40, show_default=True, type=click.IntRange(1, 4096))
@click.option("--seed", default=0, show_default=True, type=SEED, help="Same seed, same output.")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Continuations per side.")
@click.option("--temperature", default=0.7, show_default=True, type=FiniteRange(0.0),
              help="0 for greedy decoding.")
@click.option("--positions", type=click.Choice(["all", "prompt", "generated"]), default="all",
              show_default=True, help="Which token positions are edited.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@store_option
def steer_command(dictionary: str, model: str | None, hookpoint: str | None, dtype: str, device: str,
                  features: tuple[str, ...], prompt: str, max_tokens: int, seed: int, samples: int,
                  temperature: float, positions: str, as_json: bool, store_path: Path | None, backend_name: str = "hf") -> None:
    """Continue a prompt with and without feature edits, side by side."""
    from dataclasses import asdict

    from featurelens.interventions.edits import normalize_edits
    from featurelens.interventions.generate import format_side_by_side, steer_compare
    from featurelens.interventions.targets import load_target

    edits = normalize_edits(list(features))  # bad edits fail before the model loads
    target = load_target(dictionary, model=model, hookpoint=hookpoint, store_path=store_path,
                         dtype=dtype, device=device, backend_name=backend_name)
    result = steer_compare(target.backend, target.dictionary, edits, prompt, max_tokens=max_tokens,
                           seed=seed, samples=samples, temperature=temperature, positions=positions)
    click.echo(json.dumps(asdict(result), indent=2) if as_json else format_side_by_side(result))


@click.command("effects")
@_model_options
@store_option
@click.option("--where", default=None, help="SQL condition on the features table, e.g. \"density > 0.001\".")
@click.option("--limit", default=None, type=click.IntRange(1), help="At most this many features.")
@click.option("--windows", default=8, show_default=True, type=click.IntRange(1),
              help="Top-activating windows ablated per feature.")
@click.option("--tokens", default=10, show_default=True, type=click.IntRange(1),
              help="Most changed output tokens kept per feature.")
def effects_command(dictionary: str, model: str | None, hookpoint: str | None, dtype: str, device: str,
                    store_path: Path | None, where: str | None, limit: int | None, windows: int,
                    tokens: int, backend_name: str = "hf") -> None:
    """Measure what ablating each feature does to the next-token distribution (feature_effects)."""
    from featurelens.interventions.effects import compute_effects
    from featurelens.interventions.targets import load_target

    target = load_target(dictionary, model=model, hookpoint=hookpoint, store_path=store_path,
                         dtype=dtype, device=device, backend_name=backend_name)
    result = compute_effects(store_path, target, where=where, limit=limit, n_windows=windows,
                             n_tokens=tokens)
    click.echo(f"Measured ablation effects of {result.measured} feature(s) of {target.dictionary_id} "
               f"in {result.seconds:.1f} s ({result.skipped} already stored, "
               f"{result.without_examples} without top windows).")


@click.command("intervene")
@click.argument("graph_id")
@click.option("--ablate", multiple=True, metavar="NODE[,NODE...]",
              help="Feature nodes to set to 0, error nodes to remove (repeatable).")
@click.option("--steer", multiple=True, metavar="NODE=VALUE|NODE=xF",
              help="Feature nodes to set to VALUE, or to F times the graph's activation (repeatable).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 100),
              help="Other output tokens shown: those whose probability moved most.")
@click.option("--model", default=None, help="Model [default: the one the graph's transcoder set was extracted from].")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda:0...")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@store_option
def intervene_command(graph_id: str, ablate: tuple[str, ...], steer: tuple[str, ...], top: int, model: str | None,
                      dtype: str, device: str, as_json: bool, store_path: Path | None) -> None:
    """Ablate or steer feature nodes of an attribution graph and show how its target logits move."""
    from dataclasses import asdict

    from featurelens.core.errors import FeaturelensError
    from featurelens.core.store.database import Store
    from featurelens.interventions.graph_edits import format_intervention, graph_row, intervene, parse_node_edits
    from featurelens.interventions.targets import DICTIONARY_ROW_SQL, dictionary_row, load_target

    edits = parse_node_edits(ablate, steer)  # bad edits fail before the model loads
    with Store.open(store_path, read_only=True) as store:
        def query(sql: str, params: list[object]) -> list[dict[str, object]]:
            return store.sql(sql, params).to_dicts()

        graph = graph_row(query, graph_id)
        stored = store.execute(DICTIONARY_ROW_SQL, [graph["dictionary_id"]])
        if not stored:
            raise FeaturelensError(f"Graph {graph_id} names transcoder set {graph['dictionary_id']}, which is "
                                       "not in the store's dictionaries; extract or import it first.")
        target = load_target(graph["dictionary_id"], model=model, row=dictionary_row(stored[0]), dtype=dtype,
                             device=device)
        result = intervene(query, graph_id, edits, backend=target.backend, tset=target.dictionary, top=top)
    click.echo(json.dumps(asdict(result), indent=2) if as_json else format_intervention(result))
