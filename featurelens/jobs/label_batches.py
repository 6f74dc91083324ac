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
from featurelens.labelers.explain import ExplainSpec, ExplainStage, never_fired_noted
from featurelens.llm.batch.submit import Submission
from featurelens.llm.engine import RunStats
from featurelens.llm.pricing import PriceTable
from featurelens.llm.runs import finish_run, run_id_for
from featurelens.llm.stage import LLMChoice
from featurelens.scorers.score_jobs import ScoreSpec, ScoreStage


class LabelStats(RunStats):
    """A stage's counters plus what ``batches collect`` should tell the user."""

    notes: list[str]


def label_config(explain_spec: Any, score_specs: list[Any]) -> dict[str, Any]:
    return {"explain": explain_spec.config(), "scores": [spec.config() for spec in score_specs]}


def submit_label(store: Store, explain_spec: ExplainSpec, score_specs: list[ScoreSpec], *,
                 llm: LLMChoice | None = None, provider_options: dict[str, Any] | None = None) -> Submission:
    """Submit the explanation batches of a label job (scoring follows on collection).

    ``llm``: the job's ``--llm`` and provider options resolved once (else resolved here from
    ``explain_spec.llm`` and ``provider_options``); every stage carries it."""
    llm = llm or LLMChoice.resolve(explain_spec.llm, provider_options)
    # the config records the resolved default; the explainer is rebuilt if it changed its options
    explain = ExplainStage.prepare(explain_spec, llm=llm)
    for spec in score_specs:
        ScoreStage.prepare(spec, llm=llm)  # an unknown scorer option is refused now, not a day later
        if spec.llm != explain_spec.llm:
            raise FeaturelensError(
                "label --batch-api scores with the explaining LLM; drop --score-llm, or explain with "
                "--batch-api first and then run featurelens score --batch-api --llm for the other model.")
    config = label_config(explain.spec, score_specs)
    config["provider_options"] = dict(llm.options)
    submission = explain.submit(store, run=("label", config))
    return never_fired_noted(store, explain.spec.selection, submission)


def finish_label(store: Store, config: dict[str, Any], prices: PriceTable, progress: bool) -> RunStats:
    """Write what the collected batches answered, then submit the next stage's batches: the
    explain stage finished from the cache, then each score stage's next round (submitted under
    the label run) or, once none is due, its scores from the cache: the two steps of
    :meth:`~featurelens.llm.stage.LabelingStage.finish_from_batches`."""
    run_id = run_id_for("label", config)
    total = LabelStats(run_id=run_id)
    total.notes = []
    explain_spec = ExplainSpec.from_config(config["explain"])
    llm = LLMChoice.resolve(explain_spec.llm, config.get("provider_options", {}))
    explain = ExplainStage.prepare(explain_spec, provider_defaults=False, llm=llm)
    _add(total, explain.finish_cached(store, prices, progress))
    waiting = 0
    for entry in config["scores"]:
        stage = ScoreStage.prepare(ScoreSpec.from_config(entry), llm=llm)
        if stage.count(store) == 0:
            total.notes.append(f"  {stage.spec.scorer}: no explanations to score (see the failures table).")
            continue
        pending = stage.next_round(store, run_id)  # under the label run
        if pending is not None:
            waiting += 1
            total.notes.extend(getattr(pending, "notes", []))
            continue
        _add(total, stage.finish_cached(store, prices, progress))
    if waiting == 0:
        finish_run(store, run_id, "done", total.as_dict())
        total.notes.append("  label run complete: explanations and scores are written.")
    return total


def _add(total: RunStats, stats: RunStats) -> None:
    for name in ("jobs", "succeeded", "failed", "calls", "cached_calls", "failed_calls", "input_tokens",
                 "cached_input_tokens", "output_tokens", "cost_usd", "skipped", "elapsed_s"):
        setattr(total, name, getattr(total, name) + getattr(stats, name))
