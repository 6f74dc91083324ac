"""``featurelens estimate``: what labeling a selection would cost, per provider:model.

Plans every selected feature's jobs with the one planner ``--dry-run`` uses
(:mod:`featurelens.llm.plan`): the jobs are built by the stages' own code
(:meth:`~featurelens.llm.stage.LabelingStage.selection_jobs`: the explainer's, then each
scorer's against the feature's stored explanation or a typical one), on the same sample of
a large selection (:mod:`featurelens.llm.plan_sample`), counted with each provider's
declared token counter, the input its prompt cache serves and the output bound, and
priced with the price table, live and through the batch API. "N features like these"
scales the sample's per-feature figures to N. Where the dry run plans what is left of a
run, the estimate plans the whole selection, done or not.

Adaptive scorers send rounds until their interval is narrow, so their calls lie
between the first round and every round; both bounds are reported. Output tokens are
the average of this provider:model's earlier answers for the same purpose when the
store holds some (``llm_calls``), else each request's ``max_tokens`` (an upper bound;
the report says which). Nothing is sent and no key is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from featurelens.core.host.protocols import ScorerBase, declared
from featurelens.core.selection import Selection
from featurelens.core.store.database import Store
from featurelens.labelers.explain import ExplainStage
from featurelens.labelers.explain_grouped import per_request
from featurelens.llm import prompt_cache
from featurelens.llm.plan import Tally, measured_outputs, plan_jobs, typical_latency
from featurelens.llm.plan_sample import SAMPLE_FEATURES, sample_selection
from featurelens.llm.pricing import Price, PriceTable
from featurelens.llm.stage import LLMChoice
from featurelens.llm.token_count import TokenCounter, counter_for
from featurelens.scorers.score_jobs import ScoreStage


@dataclass
class StageEstimate:
    """One stage (explain or a scorer) on one provider:model, over the sample."""

    stage: str
    low: Tally = field(default_factory=Tally)  #: first round only
    high: Tally = field(default_factory=Tally)  #: every round (the hard maximum)
    output_measured: bool = False
    mode: str | None = None
    per_request: int = 1  #: features a request (grouped explanation requests)


@dataclass
class LLMEstimate:
    """Every stage on one provider:model, and the prices to apply."""

    llm: str
    price: Price | None
    stages: list[StageEstimate]
    sampled: int
    features: int
    latency_s: float
    latency_measured: bool
    counter: TokenCounter | None = None  #: what the input tokens were counted with
    choice: LLMChoice | None = None  #: ``llm`` resolved (provider, model, declaration)

    @property
    def provider_model(self) -> tuple[str, str]:
        return (self.choice.provider, self.choice.model) if self.choice else tuple(self.llm.split(":", 1))  # type: ignore[return-value]

    @property
    def batch_api(self) -> bool:
        """Whether the provider declares a batch API for this model's default options."""
        return self.choice is not None and "batch_api" in self.choice.capabilities

    def totals(self, bound: str) -> Tally:
        total = Tally()
        for stage in self.stages:
            total.add(getattr(stage, bound))
        return total

    def dollars(self, bound: str, batch: bool) -> float | None:
        """USD for all ``features`` (``bound``: low or high)."""
        if self.price is None or not self.sampled:
            return None
        tally = self.totals(bound)
        per_feature = self.price.cost(tally.input, tally.output, tally.cached, batch) / self.sampled
        return per_feature * self.features

    def wall_seconds(self, bound: str, concurrency: int, rpm: float | None, tpm: float | None) -> float:
        """Live wall time from concurrency, latency and the rate limits (the slowest wins)."""
        tally = self.totals(bound)
        scale = self.features / max(1, self.sampled)
        calls, tokens = tally.calls * scale, (tally.input + tally.output) * scale
        rate = concurrency / self.latency_s
        if rpm:
            rate = min(rate, rpm / 60)
        seconds = calls / rate if rate else 0.0
        if tpm:
            seconds = max(seconds, tokens / (tpm / 60))
        return seconds


def capabilities_for(llm: str) -> frozenset[str]:
    """What ``llm`` can do with its default options, as its provider declares (no client is
    built, no key needed): chooses the simulation mode."""
    return LLMChoice.resolve(llm).capabilities


def estimate_costs(store: Store, selection: Selection, llm: str | LLMChoice, explain: ExplainStage | None,
                   scorers: Iterable[ScoreStage], *, features: int | None = None,
                   sample: int = SAMPLE_FEATURES, prices: PriceTable | None = None,
                   counter: TokenCounter | None = None) -> LLMEstimate:
    """The estimate for explaining and scoring ``selection`` on ``llm`` (nothing is sent).

    ``explain`` and ``scorers`` are the stages a run would use (the explainer's defaults
    for this LLM already resolved, :meth:`ExplainStage.prepare`); their jobs for a sample of
    at most ``sample`` selected features are planned with
    :func:`~featurelens.llm.plan.plan_jobs`, counted with the provider's declared counter
    unless ``counter`` is given."""
    prices = prices or PriceTable.load()
    choice = llm if isinstance(llm, LLMChoice) else LLMChoice.resolve(llm)
    provider, model, caps = choice.provider, choice.model, choice.capabilities
    planned_on, _, sampled, selected = sample_selection(store, selection, sample)
    counted = counter or counter_for(provider, model)
    outputs = measured_outputs(store, provider, model)

    def plan(jobs: Any) -> Any:
        return plan_jobs(store, jobs, provider, model, counted, outputs=outputs, cache_answers=False)

    stages: list[StageEstimate] = []
    if explain is not None:
        planned = plan(explain.selection_jobs(store, planned_on, caps))
        low, high = Tally(), Tally()
        low.add(planned.sent)
        high.add(planned.sent)
        stages.append(StageEstimate("explain", low, high, planned.output_measured,
                                    per_request=per_request(explain.spec.options)))
    for stage in scorers:
        choose = declared(stage.component, "choose_mode", ScorerBase)
        first = plan(stage.selection_jobs(store, planned_on, caps))
        every = plan(stage.selection_jobs(store, planned_on, caps, every_round=True))
        stages.append(StageEstimate(f"score:{stage.spec.scorer}", first.sent, every.sent,
                                    first.output_measured, choose(caps) if callable(choose) else None))
    latency = typical_latency(store, provider, model)
    return LLMEstimate(choice.spec, prices.price(provider, model), stages, sampled,
                       features if features is not None else selected, latency.seconds, latency.measured,
                       counted, choice)


def _range(low: float, high: float, fmt: str) -> str:
    return fmt.format(low) if abs(high - low) < 1e-9 else f"{fmt.format(low)}-{fmt.format(high)}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _padding_lines(est: LLMEstimate) -> list[str]:
    """Where a shared prefix is below the cache minimum: would lengthening it pay?"""
    provider, model = est.provider_model
    out = []
    for stage in est.stages:
        if not stage.high.calls or stage.high.cached:
            continue
        prefix = round(stage.high.prefix / stage.high.calls)
        verdict = prompt_cache.padding_pays(provider, model, prefix, est.price)
        if verdict.minimum is None or not prefix:
            continue
        effect = (f"would save {verdict.saving_per_request:,.0f} input-token equivalents a call" if verdict.pays
                  else "would cost more than it saves")
        out.append(f"  {stage.stage}: shared prefix {prefix:,} tokens < cache minimum {verdict.minimum:,}; "
                   f"padding it to the minimum {effect}")
    return out


def tokenizers(estimates: list[LLMEstimate]) -> str:
    """What the input tokens were counted with: one name, or one per provider:model."""
    names = [(est.llm, est.counter.label if est.counter is not None else "?") for est in estimates]
    if len({name for _, name in names}) == 1:
        return names[0][1] if names else ""
    return "; ".join(f"{name} ({llm})" for llm, name in names)


def report_lines(estimates: list[LLMEstimate], *, concurrency: int,
                 rpm: float | None, tpm: float | None) -> list[str]:
    """The human-readable report of :func:`estimate_costs`."""
    if not estimates:
        return []
    first = estimates[0]
    lines = [f"{first.features:,} features (figures measured on {first.sampled:,} selected; tokens "
             f"counted with {tokenizers(estimates)}); per feature:"]
    for est in estimates:
        lines.append("")
        lines.append(est.llm)
        provider, model = est.provider_model
        minimum = prompt_cache.minimum_prefix(provider, model)
        batch_ok = est.batch_api
        lines.append(f"  {'stage':<36}{'calls':>10} {'input':>13} {'cached':>13} {'output':>13}  shared prefix")
        n = max(1, est.sampled)
        for stage in est.stages:
            lo, hi = stage.low.scaled(1 / n), stage.high.scaled(1 / n)
            name = stage.stage + (f" ({stage.mode})" if stage.mode else "") + (
                f" ({stage.per_request} features a request)" if stage.per_request > 1 else "")
            output = _range(lo["output"], hi["output"], "{:,.0f}") + ("" if stage.output_measured else " max")
            share = hi["prefix"] / hi["input"] if hi["input"] else 0.0
            below = minimum is not None and hi["prefix"] and not hi["cached"]
            lines.append(f"  {name:<36}{_range(lo['calls'], hi['calls'], '{:.1f}'):>10} "
                         f"{_range(lo['input'], hi['input'], '{:,.0f}'):>13} "
                         f"{_range(lo['cached'], hi['cached'], '{:,.0f}'):>13} {output:>13}  {share:.0%}"
                         + (" (below the cache minimum)" if below else ""))
        lines += _padding_lines(est)
        live = (est.dollars("low", False), est.dollars("high", False))
        batch = (est.dollars("low", True), est.dollars("high", True))
        if live[0] is None:
            lines.append("  cost: unknown (no price for this model; add one with --prices)")
        else:
            per_million = [v / est.features * 1e6 if est.features else 0.0 for v in (*live, *batch)]
            text = f"  cost for {est.features:,} features: {_range(live[0], live[1], '${:,.2f}')} live"
            if batch_ok:
                text += f", {_range(batch[0], batch[1], '${:,.2f}')} through the batch API"
            text += f" ({_range(per_million[0], per_million[1], '${:,.0f}')} per million features"
            if batch_ok:
                text += f", {_range(per_million[2], per_million[3], '${:,.0f}')} batched"
            lines.append(text + ")")
        wall = (est.wall_seconds("low", concurrency, rpm, tpm), est.wall_seconds("high", concurrency, rpm, tpm))
        basis = "measured" if est.latency_measured else "assumed"
        limits = "".join([f", {rpm:g} rpm" if rpm else "", f", {tpm:g} tpm" if tpm else ""])
        lines.append(f"  wall time live: {_range(wall[0], wall[1], '{:,.0f}')} s "
                     f"(~{_duration(wall[1])}; concurrency {concurrency}{limits}, {est.latency_s:.1f} s "
                     f"a call {basis})" + ("; batch API: within the provider's 24 h window" if batch_ok else ""))
    return lines


def as_dict(estimates: list[LLMEstimate], concurrency: int, rpm: float | None,
            tpm: float | None) -> list[dict[str, Any]]:
    """Machine-readable form (``--json``)."""
    out = []
    for est in estimates:
        n = max(1, est.sampled)
        out.append({
            "llm": est.llm, "features": est.features, "sampled": est.sampled,
            "tokenizer": est.counter.method if est.counter is not None else None,
            "stages": [{"stage": s.stage, "mode": s.mode, "output_measured": s.output_measured,
                        "features_per_request": s.per_request,
                        "per_feature_low": s.low.scaled(1 / n), "per_feature_high": s.high.scaled(1 / n)}
                       for s in est.stages],
            "usd_live": [est.dollars("low", False), est.dollars("high", False)],
            "usd_batch": [est.dollars("low", True), est.dollars("high", True)],
            "wall_s": [est.wall_seconds("low", concurrency, rpm, tpm),
                       est.wall_seconds("high", concurrency, rpm, tpm)],
            "latency_s": est.latency_s, "latency_measured": est.latency_measured})
    return out
