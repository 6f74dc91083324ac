"""``featurelens label --batch-api``: explanation and scoring batches chained across collections.

Scoring needs the explanations, so a label job through a batch API is two waits or more:

1. ``label --batch-api`` records a ``label`` run and submits the explanation requests
   as provider batches under it.
2. A later ``batches collect``, once those batches are in, finishes the label run's
   current stage: it writes the explanations from the cached answers (exactly as
   ``explain`` would), then submits every scorer's requests for the new explanations
   as batches under the same run (adaptive scorers: their first round).
3. Each next ``batches collect`` submits the next round of adaptive scorers that need one
   (:mod:`featurelens.scorers.batch_rounds`); once none does, it writes the scores and
   marks the run done.

Each step is idempotent: requests already cached or waiting in a batch are never sent
twice, and the run stays ``running`` while any of its batches is out.
"""

from __future__ import annotations

from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.store.database import Store
from featurelens.llm.batch.clients import batch_client
from featurelens.llm.batch.submit import Submission, submit_jobs
from featurelens.llm.engine import EngineSettings, RunStats
from featurelens.llm.pricing import PriceTable
from featurelens.llm.runs import finish_run, run_id_for, start_run


class LabelStats(RunStats):
    """A stage's counters plus what ``batches collect`` should tell the user."""

    notes: list[str]


def label_config(explain_spec: Any, score_specs: list[Any]) -> dict[str, Any]:
    return {"explain": explain_spec.config(), "scores": [spec.config() for spec in score_specs]}


def submit_label(store: Store, explain_spec: Any, score_specs: list[Any], *,
                 provider_options: dict[str, Any] | None = None) -> Submission:
    """Submit the explanation batches of a label job (scoring follows on collection)."""
    from featurelens.core.selection import count_features
    from featurelens.labelers.explain import explain_jobs, make_explainer, never_fired_noted
    from featurelens.labelers.explain_defaults import resolve
    from featurelens.llm.providers import build_provider
    from featurelens.scorers.score_jobs import build_scorer

    # the config records the resolved default; the explainer is rebuilt if it changed its options
    explain_spec, explainer = resolve(explain_spec, make_explainer(explain_spec), make_explainer)
    for spec in score_specs:
        build_scorer(spec)  # an unknown scorer option is refused now, not a day later
        if spec.llm != explain_spec.llm:
            raise FeaturelensError(
                "label --batch-api scores with the explaining LLM; drop --score-llm, or explain with "
                "--batch-api first and then run featurelens score --batch-api --llm for the other model.")
    count_features(store, explain_spec.selection)
    provider = build_provider(explain_spec.llm, **(provider_options or {}))
    batch_client(provider)  # refuse before the run is recorded
    config = label_config(explain_spec, score_specs)
    config["provider_options"] = provider_options or {}
    run_id = start_run(store, "label", config)
    submission = submit_jobs(store, provider, explain_jobs(store, explainer, explain_spec, run_id),
                             run_id=run_id, purpose="explain")
    return never_fired_noted(store, explain_spec.selection, submission)


def finish_label(store: Store, config: dict[str, Any], prices: PriceTable, progress: bool) -> RunStats:
    """Write what the collected batches answered, then submit the next stage's batches."""
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.providers import build_provider
    from featurelens.scorers.batch_rounds import advance
    from featurelens.scorers.score_jobs import (
        ScoreSpec,
        build_scorer,
        count_explanations,
        score_features,
        score_jobs,
    )

    run_id = run_id_for("label", config)
    settings = EngineSettings(cache_only=True, progress=progress)
    total = LabelStats(run_id=run_id)
    total.notes = []
    explained = explain_features(store, ExplainSpec.from_config(config["explain"]), settings=settings,
                                 prices=prices, provider_defaults=False)
    _add(total, explained)
    waiting = 0
    for entry in config["scores"]:
        spec = ScoreSpec.from_config(entry)
        if count_explanations(store, spec) == 0:
            total.notes.append(f"  {spec.scorer}: no explanations to score (see the failures table).")
            continue
        provider = build_provider(spec.llm, **config.get("provider_options", {}))
        jobs = score_jobs(store, build_scorer(spec), spec, frozenset(provider.capabilities), run_id)
        pending = advance(store, provider, jobs, run_id=run_id, purpose=f"score:{spec.scorer}",
                          label=spec.scorer)
        if pending is not None:
            waiting += 1
            total.notes.extend(pending.notes)
            continue
        _add(total, score_features(store, spec, settings=settings, prices=prices))
    if waiting == 0:
        finish_run(store, run_id, "done", total.as_dict())
        total.notes.append("  label run complete: explanations and scores are written.")
    return total


def _add(total: RunStats, stats: RunStats) -> None:
    for name in ("jobs", "succeeded", "failed", "calls", "cached_calls", "failed_calls", "input_tokens",
                 "cached_input_tokens", "output_tokens", "cost_usd", "skipped", "elapsed_s"):
        setattr(total, name, getattr(total, name) + getattr(stats, name))
