"""``featurelens estimate``: calls, tokens, dollars and wall time before anything is spent.

Thin: options are parsed here; the counting is :mod:`featurelens.jobs.cost_estimate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

import featurelens
from featurelens.core.cli.compat import OptionShorthandCommand
from featurelens.core.cli.numbers import PositiveRate
from featurelens.core.cli.options import store_option
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.labeling_commands import parse_options

featurelens_api = 1

DEFAULT_LLMS = ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(estimate_command)


@click.command("estimate", cls=OptionShorthandCommand)
@click.option("--llm", "llms", multiple=True, metavar="PROVIDER:MODEL",
              help=f"Provider:model to price, repeatable [default: {', '.join(DEFAULT_LLMS)}].")
@click.option("--explainer", default="token-activations", show_default=True,
              help="Explainer whose requests are counted; 'none' to count scoring only.")
@click.option("--option", "explainer_options", multiple=True, metavar="KEY=VALUE",
              help="Explainer option, repeatable (e.g. --option window=16).")
@click.option("--scorer", "scorers", multiple=True, default=("simulation",), show_default=True,
              help="Scorer, repeatable; 'none' to count explaining only.")
@click.option("--scorer-option", "-s", "scorer_options", multiple=True, metavar="KEY=VALUE",
              help="Option for every scorer, repeatable (e.g. -s adaptive=true -s window=16).")
@click.option("--where", default=None, help='SQL condition over the features table, e.g. "density > 0.001".')
@click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many features.")
@click.option("--features", type=click.IntRange(min=1), default=None,
              help="Price this many features like the selected ones (e.g. 1000000).")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="Selected features whose requests are built and counted: a hashed sample of larger "
                   "selections [default: as many as --dry-run plans, 1000].")
@click.option("--concurrency", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Requests in flight at once (for the wall time).")
@click.option("--rpm", type=PositiveRate(), default=None,
              help="Requests-per-minute limit of your provider tier.")
@click.option("--tpm", type=PositiveRate(), default=None,
              help="Tokens-per-minute limit of your provider tier.")
@click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON price table overriding the built-in one (also $FEATURELENS_PRICES).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
@store_option
def estimate_command(llms: tuple[str, ...], explainer: str, explainer_options: tuple[str, ...],
                     scorers: tuple[str, ...], scorer_options: tuple[str, ...], where: str | None,
                     dictionary_id: str | None, limit: int | None, features: int | None, sample: int | None,
                     concurrency: int, rpm: float | None, tpm: float | None, prices: Path | None,
                     as_json: bool, store_path: Path | None) -> None:
    """Estimate calls, tokens (input, cached, output; counted as each provider counts them, as
    --dry-run does), dollars with and without the batch API, and wall time for labeling a
    selection; sends nothing, needs no key."""
    from featurelens.core.selection import Selection, count_features
    from featurelens.jobs.cost_estimate import as_dict, estimate_costs, report_lines, tokenizers
    from featurelens.labelers.explain import ExplainSpec, ExplainStage
    from featurelens.llm.plan_sample import SAMPLE_FEATURES
    from featurelens.llm.pricing import PriceTable
    from featurelens.llm.stage import LLMChoice
    from featurelens.scorers.score_jobs import ScoreSpec, ScoreStage

    llms = llms or DEFAULT_LLMS
    choices = []
    for llm in llms:
        if ":" not in llm or not all(llm.partition(":")[::2]):
            raise FeaturelensError(f"--llm {llm!r} is not provider:model; write e.g. --llm openai:gpt-4o-mini.")
        choice = LLMChoice.resolve(llm)  # once: every stage of this LLM reads it
        choice.check()  # an unknown provider is one sentence naming the known ones
        choices.append(choice)
    table = PriceTable.load(prices)
    selection = Selection(where, dictionary_id, limit)
    explain_options = tuple(sorted(parse_options(explainer_options, "--option").items()))
    sopts = tuple(sorted(parse_options(scorer_options, "-s").items()))

    def explain_stage(choice: LLMChoice) -> ExplainStage | None:
        """The explain stage a run on ``choice`` would use, its defaults for that LLM resolved."""
        if explainer == "none":
            return None
        return ExplainStage.prepare(ExplainSpec(choice.spec, explainer, explain_options, where, dictionary_id,
                                                limit), llm=choice)

    scorer_names = [name for name in scorers if name != "none"]
    if choices:  # options a component does not take are refused before the store is opened
        explain_stage(choices[0])
        for name in scorer_names:
            ScoreStage.prepare(ScoreSpec(choices[0].spec, name, sopts))
    from featurelens.core.store.database import (
        Store,  # here: `featurelens --help` loads no DuckDB
    )

    with Store.open(store_path, read_only=True) as store:
        if not count_features(store, selection):
            raise FeaturelensError("No features match the selection, so there is nothing to estimate; loosen "
                                   "--where/--dictionary, or extract features into this store first.")
        estimates = []
        for choice in choices:  # each LLM with its own explainer defaults, as explain and label resolve them
            score_stages = [ScoreStage.prepare(ScoreSpec(choice.spec, name, sopts, where, dictionary_id, limit),
                                               llm=choice) for name in scorer_names]
            estimates.append(estimate_costs(store, selection, choice, explain_stage(choice), score_stages,
                                            features=features, sample=sample or SAMPLE_FEATURES, prices=table))
    if as_json:
        click.echo(json.dumps({"tokenizer": tokenizers(estimates),
                               "estimates": as_dict(estimates, concurrency, rpm, tpm)}, indent=2))
        return
    for line in report_lines(estimates, concurrency=concurrency, rpm=rpm, tpm=tpm):
        click.echo(line)
