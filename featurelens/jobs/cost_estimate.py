"""``featurelens estimate``: what labeling a selection would cost, per provider:model.

Builds the very requests a run would send for a sample of the selected features (the
explainer's, then each scorer's against the feature's stored explanation or a typical
one), counts them as ``--dry-run`` does (:func:`featurelens.llm.plan.tally`: each
provider's declared token counter, the input its prompt cache serves, the output bound)
and prices everything with the price table, live and through the batch API. "N features like these" scales the sample's
per-feature figures to N.

Adaptive scorers send rounds until their interval is narrow, so their calls lie
between the first round and every round; both bounds are reported. Output tokens are
the average of this provider:model's earlier answers for the same purpose when the
store holds some (``llm_calls``), else each request's ``max_tokens`` (an upper bound;
the report says which). Nothing is sent and no key is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from featurelens.core.host.protocols import (
    Explainer,
    FeatureRecord,
    LLMRequest,
    Scorer,
    ScorerBase,
    declared,
    example_fallbacks,
    example_kinds,
)
from featurelens.core.selection import Selection, count_features, stream_records
from featurelens.core.store.database import Store
from featurelens.labelers.explain_grouped import grouped_request
from featurelens.llm import prompt_cache
from featurelens.llm.plan import Tally, tally
from featurelens.llm.pricing import Price, PriceTable
from featurelens.llm.providers import provider_info
from featurelens.llm.token_count import TokenCounter, counter_for
from featurelens.registry.components import split_llm_spec

#: Seconds a call takes when the store has no measured latency for the provider:model.
ASSUMED_LATENCY_S = 2.0
#: Stands in for explanations not written yet (about the length of a real one).
TYPICAL_EXPLANATION = "a typical explanation of about ten words describing what tokens the feature fires on"


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
    provider, _ = split_llm_spec(llm)
    return provider_info(provider).capabilities


def _measured_output(store: Store, provider: str, model: str) -> dict[str, float]:
    rows = store.execute(
        "SELECT purpose, avg(output_tokens) FROM llm_calls WHERE provider = ? AND model = ? "
        "AND status = 'ok' AND output_tokens IS NOT NULL GROUP BY purpose", [provider, model])
    return {purpose: float(mean) for purpose, mean in rows}


def _measured_latency(store: Store, provider: str, model: str) -> float | None:
    rows = store.execute(
        "SELECT median(latency_s) FROM llm_calls WHERE provider = ? AND model = ? AND status = 'ok' "
        "AND latency_s > 0", [provider, model])
    return float(rows[0][0]) if rows and rows[0][0] else None


def _kinds(components: list[Any]) -> dict[str, int | None] | None:
    """The stored windows any of ``components`` reads (``None``: load every kind), their
    fallbacks included (a sample is small: every feature reads them)."""
    merged: dict[str, int | None] = {}
    for component in components:
        kinds = example_kinds(component)
        if not kinds:
            return None
        wanted = [*kinds.items()] + [item for instead in (example_fallbacks(component) or {}).values()
                                     for item in instead.items()]
        for kind, most in wanted:
            if kind in merged and (merged[kind] is None or most is None):
                merged[kind] = None
            else:
                merged[kind] = most if kind not in merged else max(merged[kind], most)  # type: ignore[type-var]
    return merged


def _explanations(store: Store, records: list[FeatureRecord]) -> dict[tuple[str, int], str]:
    if not records:
        return {}
    keys = " OR ".join("(dictionary_id = ? AND feature = ?)" for _ in records)
    params = [v for r in records for v in (r.dictionary_id, r.feature)]
    rows = store.execute(f"SELECT dictionary_id, feature, min(text) FROM explanations WHERE {keys} "
                         "GROUP BY dictionary_id, feature", params)
    return {(d, f): text for d, f, text in rows}


def _explain_requests(explainer: Explainer, records: list[FeatureRecord],
                      per_request: int) -> Iterable[list[LLMRequest]]:
    """The explainer's requests for ``records``, grouped ``per_request`` features to one as
    ``explain`` groups them (features with no request are left out of the groups)."""
    if per_request <= 1:
        for record in records:
            yield explainer.requests(record)
        return
    explainable = [r for r in records if r.examples and explainer.requests(r)]
    for start in range(0, len(explainable), per_request):
        yield [grouped_request(explainer, explainable[start:start + per_request])]


def estimate_costs(store: Store, selection: Selection, llms: Iterable[str], explainer: Explainer | None,
                   scorers: Iterable[Scorer], *, features: int | None = None, sample: int = 200,
                   prices: PriceTable | None = None, counter: TokenCounter | None = None,
                   features_per_request: int = 1) -> list[LLMEstimate]:
    """Per provider:model estimates for explaining and scoring the selection (nothing is sent).

    Requests are counted as ``--dry-run`` counts them (:func:`featurelens.llm.plan.tally`),
    with each provider's declared counter unless ``counter`` is given.
    ``features_per_request`` > 1 counts the explainer's requests grouped as ``explain`` sends
    them (:mod:`featurelens.labelers.explain_grouped`)."""
    prices = prices or PriceTable.load()
    scorers = list(scorers)
    selected = count_features(store, selection)
    total = features if features is not None else selected
    kinds = _kinds(([explainer] if explainer else []) + scorers)
    sample_selection = Selection(selection.where, selection.dictionary_id,
                                 min(sample, selection.limit or sample))
    records = [r for chunk in stream_records(store, sample_selection, 256, kinds) for r in chunk]
    texts = _explanations(store, records)
    out = []
    for llm in llms:
        provider, model = split_llm_spec(llm)
        caps = capabilities_for(llm)
        counted = counter or counter_for(provider, model)
        outputs = _measured_output(store, provider, model)
        stages: list[StageEstimate] = []
        if explainer is not None:
            stage = StageEstimate("explain", per_request=features_per_request)
            measured = True
            for requests in _explain_requests(explainer, records, features_per_request):
                counted_tally, ok = tally(requests, counted, provider, model, outputs)
                stage.low.add(counted_tally)
                stage.high.add(counted_tally)
                measured = measured and ok
            stage.output_measured = measured
            stages.append(stage)
        for scorer in scorers:
            stage = StageEstimate(f"score:{scorer.name}")
            choose = declared(scorer, "choose_mode", ScorerBase)
            stage.mode = choose(caps) if callable(choose) else None
            every = declared(scorer, "all_requests", ScorerBase)
            measured = True
            for record in records:
                if not record.examples:
                    continue
                text = texts.get((record.dictionary_id, record.feature), TYPICAL_EXPLANATION)
                first = scorer.requests(record, text, caps)
                low, ok = tally(first, counted, provider, model, outputs)
                high, _ = tally(every(record, text, caps) if callable(every) else first, counted,
                                provider, model, outputs)
                stage.low.add(low)
                stage.high.add(high)
                measured = measured and ok
            stage.output_measured = measured
            stages.append(stage)
        latency = _measured_latency(store, provider, model)
        out.append(LLMEstimate(llm, prices.price(provider, model), stages, len(records), total,
                               latency or ASSUMED_LATENCY_S, latency is not None, counted))
    return out


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
    provider, model = split_llm_spec(est.llm)
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
        provider, model = split_llm_spec(est.llm)
        minimum = prompt_cache.minimum_prefix(provider, model)
        batch_ok = "batch_api" in capabilities_for(est.llm)
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
