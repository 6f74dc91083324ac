"""``featurelens score`` and ``featurelens label`` (explain, then score).

Thin: options are parsed here; the work is in :mod:`featurelens.scorers.score_jobs`
and :mod:`featurelens.labelers.explain`, both on the labelers' batch engine.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

import featurelens
from featurelens.core.cli.compat import OptionShorthandCommand
from featurelens.core.cli.options import store_option
from featurelens.plugins.label_executor import (
    check_executor,
    executor_options,
    labeling_provider,
)
from featurelens.plugins.labeling_commands import (
    batch_choice,
    batch_options,
    engine_options,
    engine_settings,
    finish_job,
    parse_options,
    summary,
)

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
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


@click.command("score", cls=OptionShorthandCommand)
@click.option("--scorer", default="simulation", show_default=True,
              help="Scorer name: simulation, detection, fuzzing or a plugin's.")
@click.option("--llm", default="local:smollm2", show_default=True,
              help="Simulator provider:model, e.g. local:smollm2, openai:gpt-4o-mini.")
@click.option("--option", "scorer_options", multiple=True, metavar="KEY=VALUE",
              help="Scorer option, repeatable (e.g. --option n_random=20 --option mode=json).")
@click.option("--explainer", default=None, help="Only explanations written by this explainer.")
@click.option("--explained-by", default=None, metavar="PROVIDER:MODEL",
              help="Only explanations written by this LLM.")
@_selection_options
@batch_options
@engine_options
@executor_options
@store_option
def score_command(scorer: str, llm: str, scorer_options: tuple[str, ...], explainer: str | None,
                  explained_by: str | None, where: str | None, dictionary_id: str | None,
                  limit: int | None, dry_run: bool, batch_api: bool | None, batch_threshold: int,
                  concurrency: int,
                  rpm: float | None, tpm: float | None, prices: Path | None,
                  provider_options: tuple[str, ...], no_progress: bool, max_attempts: int,
                  processes: int | None,
                  executor: str, workers: int, address: str | None, store_path: Path | None) -> None:
    """Score stored explanations: simulation correlation or detection/fuzzing accuracy.

    Exit status: 0 all done, 3 some failed, 4 none succeeded (see the failures table).
    """
    from featurelens.core.store.database import Store
    from featurelens.llm.pricing import PriceTable
    from featurelens.scorers.score_jobs import (
        ScoreSpec,
        count_explanations,
        plan_score,
        score_features,
        submit_score,
    )

    spec = ScoreSpec(llm, scorer, tuple(sorted(parse_options(scorer_options, "--option").items())),
                     where, dictionary_id, limit, explainer, explained_by)
    table = PriceTable.load(prices)
    popts = parse_options(provider_options, "--provider-option")
    with Store.open(store_path) as store:
        batch_api = batch_choice(batch_api, count_explanations(store, spec), batch_threshold, llm, popts)
        check_executor(executor, address, batch_api)
        if dry_run:
            settings = engine_settings(concurrency, rpm, tpm, no_progress, max_attempts, processes)
            for line in plan_score(store, spec, table, batch=batch_api, provider_options=popts,
                                   settings=settings).lines():
                click.echo(line)
            return
        if batch_api:
            for line in submit_score(store, spec, provider_options=popts).lines():
                click.echo(line)
            return
        with labeling_provider(executor, llm, popts, workers=workers, address=address, rpm=rpm,
                               tpm=tpm) as remote:  # on Ray the limiter actor holds rpm/tpm
            stats = score_features(store, spec, provider=remote, provider_options=popts, prices=table,
                                   settings=engine_settings(concurrency, None if remote else rpm,
                                                            None if remote else tpm, no_progress,
                                                            max_attempts, processes))
        click.echo(summary(stats, f"scored ({scorer})"))
        finish_job(store, [(f"score:{scorer}", stats)])


@click.command("label", cls=OptionShorthandCommand)
@click.option("--llm", default="local:smollm2", show_default=True,
              help="provider:model that writes the explanations.")
@click.option("--explainer", default="token-activations", show_default=True, help="Explainer name.")
@click.option("--option", "explainer_options", multiple=True, metavar="KEY=VALUE",
              help="Explainer option, repeatable (e.g. --option n_examples=20).")
@click.option("--scorer", "scorers", multiple=True, default=("simulation",), show_default=True,
              help="Scorer, repeatable (--scorer simulation --scorer detection).")
@click.option("--score-llm", default=None, metavar="PROVIDER:MODEL",
              help="Simulator LLM [default: the --llm].")
@click.option("--scorer-option", "-s", "scorer_options", multiple=True, metavar="KEY=VALUE",
              help="Option for every scorer, repeatable (e.g. -s n_random=20).")
@_selection_options
@batch_options
@engine_options
@executor_options
@store_option
def label_command(llm: str, explainer: str, explainer_options: tuple[str, ...], scorers: tuple[str, ...],
                  score_llm: str | None, scorer_options: tuple[str, ...], where: str | None,
                  dictionary_id: str | None, limit: int | None, dry_run: bool, batch_api: bool | None,
                  batch_threshold: int, concurrency: int,
                  rpm: float | None, tpm: float | None, prices: Path | None,
                  provider_options: tuple[str, ...], no_progress: bool, max_attempts: int,
                  processes: int | None,
                  executor: str, workers: int, address: str | None, store_path: Path | None) -> None:
    """Explain features, then score the new explanations; rerun to resume either stage.

    Exit status over both stages: 0 all done, 3 some failed, 4 none succeeded.
    """
    from featurelens.core.store.database import Store
    from featurelens.labelers.explain import (
        ExplainSpec,
        explain_features,
        make_explainer,
        plan_explain,
    )
    from featurelens.llm.offline import effective_llm, needs_llm
    from featurelens.llm.pricing import PriceTable
    from featurelens.llm.providers import build_provider
    from featurelens.scorers.score_jobs import (
        ScoreSpec,
        build_scorer,
        count_explanations,
        plan_score_before_explaining,
        score_features,
    )

    explain_spec = ExplainSpec(llm, explainer, tuple(sorted(parse_options(explainer_options, "--option").items())),
                               where, dictionary_id, limit)
    sopts = tuple(sorted(parse_options(scorer_options, "-s").items()))
    written_by = effective_llm(make_explainer(explain_spec), llm)  # offline:none for token-lookup
    score_specs = [ScoreSpec(score_llm or llm, name, sopts, where, dictionary_id, limit, explainer, written_by)
                   for name in scorers]
    for spec in score_specs:
        build_scorer(spec)  # a bad scorer option is refused now, not after the explain stage ran
    table = PriceTable.load(prices)
    popts = parse_options(provider_options, "--provider-option")
    settings = engine_settings(concurrency, rpm, tpm, no_progress, max_attempts, processes)
    with Store.open(store_path) as store:
        from featurelens.core.selection import count_features

        from featurelens.llm.stage import LLMChoice

        choice = LLMChoice.resolve(llm, popts)  # the job's --llm, resolved once for every stage
        batch_api = batch_choice(batch_api, count_features(store, explain_spec.selection), batch_threshold,
                                 choice, popts)
        check_executor(executor, address, batch_api)
        if batch_api and not dry_run:
            from featurelens.jobs.label_batches import submit_label

            for line in submit_label(store, explain_spec, score_specs, llm=choice).lines():
                click.echo(line)
            click.echo("Scoring is submitted by the first featurelens batches collect after these are done.")
            return
        if dry_run:
            click.echo("explain stage:")
            for line in plan_explain(store, explain_spec, table, batch=batch_api, settings=settings).lines():
                click.echo("  " + line)
            for spec in score_specs:
                click.echo(f"score stage {spec.scorer} (one explanation per feature assumed):")
                for line in plan_score_before_explaining(store, spec, table, popts, settings).lines():
                    click.echo("  " + line)
            return
        with ExitStack() as pools:  # --executor ray: each LLM answered on a pool of Ray workers
            def provider_for(spec_llm: str) -> tuple[Any, Any]:
                """The provider and its engine settings (on Ray the limiter actor holds rpm/tpm)."""
                if executor != "ray" or spec_llm.startswith("offline:"):
                    return build_provider(spec_llm, **popts), settings
                return pools.enter_context(labeling_provider(executor, spec_llm, popts, workers=workers,
                                                             address=address, rpm=rpm, tpm=tpm)), \
                    engine_settings(concurrency, None, None, no_progress, max_attempts, processes)

            # Offline explainers and scorers (token-lookup, token-check) get no client at all.
            provider, explain_settings = provider_for(written_by)
            stats = explain_features(store, explain_spec, provider=provider, prices=table, settings=explain_settings)
            click.echo(summary(stats, "explained"))
            stages = [("explain", stats)]
            # Every explanation failed (a closed port, HTTP 500s): nothing to score, and the
            # explain stage's line and exit status (4) say why, not "run explain first".
            score_specs = [spec for spec in score_specs if count_explanations(store, spec)]
            simulator, score_settings = None, settings
            if any(needs_llm(build_scorer(spec)) for spec in score_specs):
                if (score_llm or llm) == written_by:
                    simulator, score_settings = provider, explain_settings
                else:
                    pools.close()  # the explainer's workers hand their CPUs/GPUs to the simulator's
                    simulator, score_settings = provider_for(score_llm or llm)
            for spec in score_specs:
                stats = score_features(store, spec, provider=simulator, prices=table, settings=score_settings)
                click.echo(summary(stats, f"scored ({spec.scorer})"))
                stages.append((f"score:{spec.scorer}", stats))
        finish_job(store, stages)
