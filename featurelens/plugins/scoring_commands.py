"""``featurelens score`` and ``featurelens label`` (explain, then score).

Thin: options are parsed here; the work is in :mod:`featurelens.scorers.score_jobs`
and :mod:`featurelens.labelers.explain`, both on the labelers' batch engine.
"""

from __future__ import annotations

from pathlib import Path

import click

import featurelens
from featurelens.core.cli_options import store_option
from featurelens.core.store import Store
from featurelens.plugins.labeling_commands import (batch_choice, batch_options, engine_options, engine_settings,
                                                   parse_options, summary)

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    from featurelens.scorers.score_jobs import register_batch_finisher

    register_batch_finisher()
    import featurelens.labelers.label_batches  # noqa: F401 - lets batches collect chain label runs
    cli.add_command(score_command)
    cli.add_command(label_command)


def _selection_options(function):
    for option in reversed([
        click.option("--where", default=None,
                     help='SQL condition over the features table, e.g. "density > 0.001".'),
        click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many features."),
        click.option("--dry-run", is_flag=True, help="Print calls, tokens and estimated cost; send nothing."),
    ]):
        function = option(function)
    return function


@click.command("score")
@click.option("--scorer", default="simulation", show_default=True,
              help="Scorer name: simulation, detection, fuzzing or a plugin's.")
@click.option("--llm", default="local:smollm2", show_default=True,
              help="Simulator provider:model, e.g. local:smollm2, openai:gpt-4o-mini.")
@click.option("--option", "-o", "scorer_options", multiple=True, metavar="KEY=VALUE",
              help="Scorer option, repeatable (e.g. -o n_random=20 -o mode=json).")
@click.option("--explainer", default=None, help="Only explanations written by this explainer.")
@click.option("--explained-by", default=None, metavar="PROVIDER:MODEL",
              help="Only explanations written by this LLM.")
@_selection_options
@batch_options
@engine_options
@store_option
def score_command(scorer: str, llm: str, scorer_options: tuple[str, ...], explainer: str | None,
                  explained_by: str | None, where: str | None, dictionary_id: str | None,
                  limit: int | None, dry_run: bool, batch_api: bool | None, batch_threshold: int,
                  concurrency: int,
                  rpm: float | None, tpm: float | None, prices: Path | None,
                  provider_options: tuple[str, ...], no_progress: bool, store_path: Path | None) -> None:
    """Score stored explanations: simulation correlation or detection/fuzzing accuracy."""
    from featurelens.labelers.pricing import PriceTable
    from featurelens.scorers.score_jobs import (ScoreSpec, count_explanations, plan_score, score_features,
                                                submit_score)

    spec = ScoreSpec(llm, scorer, tuple(sorted(parse_options(scorer_options, "-o").items())),
                     where, dictionary_id, limit, explainer, explained_by)
    table = PriceTable.load(prices)
    popts = parse_options(provider_options, "--provider-option")
    with Store.open(store_path) as store:
        batch_api = batch_choice(batch_api, count_explanations(store, spec), batch_threshold, llm, popts)
        if dry_run:
            for line in plan_score(store, spec, table, batch=batch_api, provider_options=popts).lines():
                click.echo(line)
            return
        if batch_api:
            for line in submit_score(store, spec, provider_options=popts).lines():
                click.echo(line)
            return
        stats = score_features(store, spec, provider_options=popts, prices=table,
                               settings=engine_settings(concurrency, rpm, tpm, no_progress))
    click.echo(summary(stats, f"scored ({scorer})"))


@click.command("label")
@click.option("--llm", default="local:smollm2", show_default=True,
              help="provider:model that writes the explanations.")
@click.option("--explainer", default="token-activations", show_default=True, help="Explainer name.")
@click.option("--option", "-o", "explainer_options", multiple=True, metavar="KEY=VALUE",
              help="Explainer option, repeatable (e.g. -o n_examples=20).")
@click.option("--scorer", "scorers", multiple=True, default=("simulation",), show_default=True,
              help="Scorer, repeatable (--scorer simulation --scorer detection).")
@click.option("--score-llm", default=None, metavar="PROVIDER:MODEL",
              help="Simulator LLM [default: the --llm].")
@click.option("--scorer-option", "-s", "scorer_options", multiple=True, metavar="KEY=VALUE",
              help="Option for every scorer, repeatable (e.g. -s n_random=20).")
@_selection_options
@batch_options
@engine_options
@store_option
def label_command(llm: str, explainer: str, explainer_options: tuple[str, ...], scorers: tuple[str, ...],
                  score_llm: str | None, scorer_options: tuple[str, ...], where: str | None,
                  dictionary_id: str | None, limit: int | None, dry_run: bool, batch_api: bool | None,
                  batch_threshold: int, concurrency: int,
                  rpm: float | None, tpm: float | None, prices: Path | None,
                  provider_options: tuple[str, ...], no_progress: bool, store_path: Path | None) -> None:
    """Explain features, then score the new explanations; rerun to resume either stage."""
    from featurelens.labelers.explain import ExplainSpec, explain_features, plan_explain
    from featurelens.labelers.pricing import PriceTable
    from featurelens.labelers.providers import build_provider
    from featurelens.scorers.score_jobs import ScoreSpec, plan_score_before_explaining, score_features

    explain_spec = ExplainSpec(llm, explainer, tuple(sorted(parse_options(explainer_options, "-o").items())),
                               where, dictionary_id, limit)
    sopts = tuple(sorted(parse_options(scorer_options, "-s").items()))
    score_specs = [ScoreSpec(score_llm or llm, name, sopts, where, dictionary_id, limit, explainer, llm)
                   for name in scorers]
    table = PriceTable.load(prices)
    popts = parse_options(provider_options, "--provider-option")
    settings = engine_settings(concurrency, rpm, tpm, no_progress)
    with Store.open(store_path) as store:
        from featurelens.labelers.records import count_features

        batch_api = batch_choice(batch_api, count_features(store, explain_spec.selection), batch_threshold,
                                 llm, popts)
        if batch_api and not dry_run:
            from featurelens.labelers.label_batches import submit_label

            for line in submit_label(store, explain_spec, score_specs, provider_options=popts).lines():
                click.echo(line)
            click.echo("Scoring is submitted by the first featurelens batches collect after these are done.")
            return
        if dry_run:
            click.echo("explain stage:")
            for line in plan_explain(store, explain_spec, table, batch=batch_api).lines():
                click.echo("  " + line)
            for spec in score_specs:
                click.echo(f"score stage {spec.scorer} (one explanation per feature assumed):")
                for line in plan_score_before_explaining(store, spec, table, popts).lines():
                    click.echo("  " + line)
            return
        provider = build_provider(llm, **popts)
        stats = explain_features(store, explain_spec, provider=provider, prices=table, settings=settings)
        click.echo(summary(stats, "explained"))
        simulator = provider if (score_llm or llm) == llm else build_provider(score_llm, **popts)
        for spec in score_specs:
            stats = score_features(store, spec, provider=simulator, prices=table, settings=settings)
            click.echo(summary(stats, f"scored ({spec.scorer})"))
