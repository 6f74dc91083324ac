"""``featurelens explain``, and the options every labeling command shares.

Thin: options are parsed here, the work is in :mod:`featurelens.labelers`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import featurelens
from featurelens.core.cli.compat import OptionShorthandCommand
from featurelens.core.cli.numbers import PositiveRate
from featurelens.core.cli.options import store_option
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.label_executor import (
    check_executor,
    executor_options,
    labeling_provider,
)

if TYPE_CHECKING:  # the store stack loads only when a command runs
    from featurelens.core.store.database import Store

featurelens_api = 1


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(explain_command)


def parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FeaturelensError(f"{flag} {pair!r} is not of the form key=value; "
                                   f"write e.g. {flag} n_examples=20.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def engine_options(function):
    """Options shared by every command that runs LLM jobs (explain, score, label)."""
    options = [
        click.option("--concurrency", type=click.IntRange(1, 4096), default=32, show_default=True,
                     help="Requests in flight at once."),
        click.option("--rpm", type=PositiveRate(), default=None,
                     help="Requests-per-minute limit of your provider tier."),
        click.option("--tpm", type=PositiveRate(), default=None,
                     help="Tokens-per-minute limit of your provider tier."),
        click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="JSON price table overriding the built-in one (also $FEATURELENS_PRICES)."),
        click.option("--provider-option", "provider_options", multiple=True, metavar="KEY=VALUE",
                     help="Provider option, e.g. base_url=http://localhost:8000/v1 or timeout=60."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
        click.option("--max-attempts", type=click.IntRange(1, 100), default=6, show_default=True,
                     help="Requests per call before it fails (1: no retries)."),
        click.option("--processes", type=click.IntRange(1, 256), default=None,
                     help="Worker processes for explainers and scorers that need no LLM (token-lookup, "
                          "token-check); this process still writes the store [default: one per core "
                          "from 20,000 features, else 1]."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def batch_options(function):
    """``--batch-api/--no-batch-api`` and ``--batch-threshold`` (explain, score, label)."""
    from featurelens.llm.batch.choice import DEFAULT_THRESHOLD

    options = [
        click.option("--batch-api/--no-batch-api", default=None,
                     help="Submit through the provider's batch API (half price, up to 24 h; collect with "
                          "featurelens batches collect) [default: from --batch-threshold items on]."),
        click.option("--batch-threshold", type=click.IntRange(min=1), default=DEFAULT_THRESHOLD,
                     show_default=True, help="Items from which the batch API is used unless --no-batch-api."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def batch_choice(flag: bool | None, items: int, threshold: int, llm: Any,
                 provider_options: dict[str, Any]) -> bool:
    """Whether to use the batch API; prints why when the job size decided it (``llm``:
    ``provider:model`` or the job's resolved ``LLMChoice``)."""
    from featurelens.llm.batch.choice import choose_batch

    use, note = choose_batch(flag, items, threshold, llm, provider_options)
    if note:
        click.echo(note, err=True)
    return use


def engine_settings(concurrency: int, rpm: float | None, tpm: float | None, no_progress: bool,
                    max_attempts: int = 6, processes: int | None = None):
    from featurelens.llm.engine import EngineSettings
    from featurelens.llm.retry import RetryPolicy

    return EngineSettings(concurrency=concurrency, rpm=rpm, tpm=tpm, progress=not no_progress,
                          retry=RetryPolicy(max_attempts=max_attempts), processes=processes)


def finish_job(store: Store, stages: list[tuple[str, Any]]) -> None:
    """Print each stage's failure summary and the status line, then exit with the job's
    status (see :mod:`featurelens.llm.outcome`)."""
    from featurelens.llm.outcome import closing_line, exit_status, status_line

    for stage, stats in stages:
        click.echo(closing_line(store, stage, stats))
    code = exit_status(s for _, s in stages)
    line = status_line(code, [s for _, s in stages])
    if line:
        click.echo(line, err=True)
    if code:
        raise SystemExit(code)


@click.command("explain", cls=OptionShorthandCommand)
@click.option("--llm", default="local:smollm2", show_default=True,
              help="provider:model, e.g. openai:gpt-4o-mini, anthropic:claude-haiku-4-5.")
@click.option("--explainer", default="token-activations", show_default=True,
              help="Explainer name (featurelens plugins list --all shows them).")
@click.option("--option", "explainer_options", multiple=True, metavar="KEY=VALUE",
              help="Explainer option, repeatable (e.g. --option n_examples=20).")
@click.option("--where", default=None, help='SQL condition over the features table, e.g. "density > 0.001".')
@click.option("--dictionary", "dictionary_id", default=None, help="Only this dictionary's features.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many features.")
@click.option("--dry-run", is_flag=True, help="Print calls, tokens and estimated cost; send nothing.")
@batch_options
@engine_options
@executor_options
@store_option
def explain_command(llm: str, explainer: str, explainer_options: tuple[str, ...], where: str | None,
                    dictionary_id: str | None, limit: int | None, dry_run: bool, batch_api: bool | None,
                    batch_threshold: int, concurrency: int, rpm: float | None, tpm: float | None,
                    prices: Path | None, provider_options: tuple[str, ...], no_progress: bool,
                    max_attempts: int, processes: int | None, executor: str, workers: int,
                    address: str | None,
                    store_path: Path | None) -> None:
    """Explain features with an LLM; resumable, cached, and written as results arrive.

    Exit status: 0 all done, 3 some features failed, 4 none succeeded (see the failures table).
    """
    from featurelens.core.selection import count_features
    from featurelens.core.store.database import Store
    from featurelens.labelers.explain import ExplainSpec, explain_features, plan_explain
    from featurelens.llm.pricing import PriceTable

    spec = ExplainSpec(llm, explainer, tuple(sorted(parse_options(explainer_options, "--option").items())),
                       where, dictionary_id, limit)
    table = PriceTable.load(prices)
    popts = parse_options(provider_options, "--provider-option")
    with Store.open(store_path) as store:
        batch_api = batch_choice(batch_api, count_features(store, spec.selection), batch_threshold, llm, popts)
        check_executor(executor, address, batch_api)
        if dry_run:
            settings = engine_settings(concurrency, rpm, tpm, no_progress, max_attempts, processes)
            for line in plan_explain(store, spec, table, batch=batch_api, settings=settings).lines():
                click.echo(line)
            return
        if batch_api:
            from featurelens.labelers.explain import submit_explain

            for line in submit_explain(store, spec, provider_options=popts, prices=table).lines():
                click.echo(line)
            return
        with labeling_provider(executor, llm, popts, workers=workers, address=address, rpm=rpm,
                               tpm=tpm) as remote:  # on Ray the limiter actor holds rpm/tpm
            stats = explain_features(store, spec, provider=remote, provider_options=popts, prices=table,
                                     settings=engine_settings(concurrency, None if remote else rpm,
                                                              None if remote else tpm, no_progress,
                                                              max_attempts, processes))
        click.echo(summary(stats, "explained"))
        finish_job(store, [("explain", stats)])


def summary(stats: Any, verb: str) -> str:
    """One line of counters after a run."""
    cost = f"${stats.cost_usd:.4f}" + (f" (+{stats.unpriced_calls} unpriced calls)"
                                       if stats.unpriced_calls else "")
    from featurelens.llm.outcome import never_fired_note, nothing_to_do

    line = (f"{verb} {stats.succeeded:,} features, {stats.failed:,} failed (see the failures "
            f"table), {stats.skipped:,} already done{never_fired_note(stats)}; {stats.calls:,} calls, "
            f"{stats.cached_calls:,} from the cache, {stats.input_tokens:,} input and "
            f"{stats.output_tokens:,} output tokens, {cost}, {stats.elapsed_s:.1f} s.")
    idle = nothing_to_do(stats)
    return line + (f"\n{idle}" if idle else "")
