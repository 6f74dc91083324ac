"""Explaining features: turn a selection of stored features into engine jobs.

:func:`explain_features` is the Python API behind ``featurelens explain`` and the
explain stage of ``featurelens run``. Features that already have an explanation from
the same explainer, LLM and options are skipped (their id is deterministic), so a rerun
after a crash only does what is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from featurelens.core.cli.option_errors import bad_value, unknown_option
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create, get_registry
from featurelens.core.host.protocols import (
    Explainer,
    ExplainerBase,
    FeatureRecord,
    LLMProvider,
    LLMResponse,
    ParseError,
    declared,
    example_kinds,
)
from featurelens.core.selection import Selection, count_features, stream_records
from featurelens.core.store.argument import StoreLike, using_store
from featurelens.core.store.database import Store
from featurelens.labelers import explain_grouped as grouped
from featurelens.labelers.explain_defaults import resolve
from featurelens.llm import providers
from featurelens.llm.batch.clients import batch_client
from featurelens.llm.batch.submit import Submission, submit_jobs
from featurelens.llm.engine import EngineSettings, Job, RunStats
from featurelens.llm.offline import effective_llm
from featurelens.llm.plan import Estimate, estimate
from featurelens.llm.pricing import PriceTable
from featurelens.llm.runs import run_labeling, start_run
from featurelens.registry.components import split_llm_spec

#: Longest explanation stored; explainers should clean and shorten, this is the last guard.
MAX_EXPLANATION_CHARS = 1000


def explanation_id(dictionary_id: str, feature: int, explainer: str, llm: str,
                   options: dict[str, Any]) -> str:
    """Deterministic id: the same feature, explainer, LLM and options give the same id."""
    text = json.dumps([dictionary_id, feature, explainer, llm, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ExplainSpec:
    """Everything that identifies an explain job (stored as the run's config)."""

    llm: str
    explainer: str = "token-activations"
    explainer_options: tuple[tuple[str, Any], ...] = ()
    where: str | None = None
    dictionary_id: str | None = None
    limit: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.explainer_options)

    @property
    def selection(self) -> Selection:
        return Selection(self.where, self.dictionary_id, self.limit)

    @property
    def method(self) -> str:
        """failures.method of this spec's work: explainer, LLM and options."""
        options = f" {json.dumps(self.options, sort_keys=True, default=str)}" if self.options else ""
        return f"{self.explainer} by {self.llm}{options}"

    def config(self) -> dict[str, Any]:
        return {"llm": self.llm, "explainer": self.explainer, "explainer_options": self.options,
                "where": self.where, "dictionary_id": self.dictionary_id, "limit": self.limit}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ExplainSpec":
        return cls(config["llm"], config["explainer"],
                   tuple(sorted((config.get("explainer_options") or {}).items())),
                   config.get("where"), config.get("dictionary_id"), config.get("limit"))


def offline_spec(explainer: Explainer, spec: ExplainSpec) -> ExplainSpec:
    """``spec`` recorded under the offline LLM when the explainer needs none (token-lookup)."""
    return replace(spec, llm=effective_llm(explainer, spec.llm))


def make_explainer(spec: ExplainSpec) -> Explainer:
    """The explainer of ``spec``; an option it does not take is one clear sentence."""
    options = {k: v for k, v in spec.options.items() if k != grouped.OPTION}  # the job's, not the explainer's
    try:
        explainer = create("explainer", spec.explainer, **options)
        grouped.per_request(spec.options, declared(explainer, "max_tokens", ExplainerBase))
        return explainer
    except (TypeError, ValueError) as error:
        if not unknown_option(error):
            raise bad_value("explainer", spec.explainer, options, error) from None
        raise FeaturelensError(
            f"The explainer {spec.explainer!r} does not take the option(s) "
            f"{', '.join(sorted(spec.options))} ({error}); see featurelens explain --help "
            "and the explainer's documentation for its options.") from None


def _finisher(explainer: Explainer, spec: ExplainSpec, record: FeatureRecord, eid: str,
              run_id: str | None):
    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        text = explainer.parse(record, [r for r in responses if r is not None])
        # An explainer may return a str carrying ``evidence`` (token-lookup's coverage and
        # precision); it is stored beside the options that shaped the explanation.
        evidence = getattr(text, "evidence", None) or {}
        text = " ".join((text or "").split())
        if not text:
            raise ParseError("the explanation is empty")
        return {"explanations": [{
            "explanation_id": eid, "dictionary_id": record.dictionary_id, "feature": record.feature,
            "explainer": spec.explainer, "llm": spec.llm, "text": text[:MAX_EXPLANATION_CHARS],
            "options": json.dumps({**spec.options, **evidence}, sort_keys=True, default=str),
            "run_id": run_id,
        }]}
    return finish


def explain_jobs(store: Store, explainer: Explainer, spec: ExplainSpec, run_id: str | None = None,
                 chunk_size: int = 256, on_skip: Callable[[int], None] | None = None) -> Iterator[Job]:
    """One job per selected feature that has no explanation yet, streamed chunk by chunk.

    ``on_skip(n)`` is told how many features of each chunk were already explained.
    """
    kinds = example_kinds(explainer)  # optional: which windows it reads
    per_request = grouped.per_request(spec.options)
    for records in stream_records(store, spec.selection, chunk_size, kinds):
        pending: list[tuple[FeatureRecord, str]] = []
        ids = {(r.dictionary_id, r.feature): explanation_id(r.dictionary_id, r.feature,
                                                            spec.explainer, spec.llm, spec.options)
               for r in records}
        done = _existing(store, list(ids.values()))
        if done and on_skip is not None:
            on_skip(len(done))
        for record in records:
            eid = ids[(record.dictionary_id, record.feature)]
            if eid in done:
                continue
            try:
                if not record.examples:
                    raise ParseError(f"feature {record.feature} has no stored examples to explain")
                requests = explainer.requests(record)
            except ParseError as error:  # recorded as this feature's failure, the run goes on
                yield Job(record.dictionary_id, record.feature, "explain", [], _refused(error),
                          method=spec.method)
                continue
            if per_request > 1 and requests:
                pending.append((record, eid))
                continue
            yield Job(record.dictionary_id, record.feature, "explain", requests,
                      _finisher(explainer, spec, record, eid, run_id), method=spec.method)
        yield from grouped.group_jobs(iter(pending), explainer, spec, per_request, run_id,
                                      MAX_EXPLANATION_CHARS)


def _refused(error: ParseError):
    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        raise error
    return finish


def _existing(store: Store, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    placeholders = ",".join("?" * len(ids))
    rows = store.execute(f"SELECT explanation_id FROM explanations WHERE explanation_id IN ({placeholders})", ids)
    return {r[0] for r in rows}


def explain_features(store: Store | StoreLike, spec: ExplainSpec, *, provider: LLMProvider | None = None,
                     provider_options: dict[str, Any] | None = None,
                     settings: EngineSettings | None = None,
                     prices: PriceTable | None = None, provider_defaults: bool = True) -> RunStats:
    """Explain the selected features with ``spec.explainer`` on ``spec.llm``.

    Writes ``explanations`` (and ``llm_calls``, ``llm_cache``, ``failures``) as results
    arrive; returns the run's counters. ``provider`` overrides building one from
    ``spec.llm`` (tests, benchmarks, a client shared with other stages). ``store`` may
    be an open store or its path. ``provider_defaults``: fill in the provider's
    ``features_per_request`` when the spec does not say (:mod:`.explain_defaults`);
    finishing a recorded run passes False, so it rebuilds exactly what was submitted.
    """
    if not isinstance(store, Store):
        with using_store(store) as opened:
            return explain_features(opened, spec, provider=provider, provider_options=provider_options,
                                    settings=settings, prices=prices, provider_defaults=provider_defaults)
    explainer = make_explainer(spec)
    if provider_defaults:
        spec, explainer = resolve(spec, explainer, make_explainer)
    spec = offline_spec(explainer, spec)
    return run_labeling(
        store, kind="explain", config=spec.config(), llm=spec.llm, provider=provider,
        provider_options=provider_options, total=count_features(store, spec.selection),
        make_jobs=lambda engine, run_id, _provider: explain_jobs(
            store, explainer, spec, run_id, on_skip=engine.skip),
        desc=f"explain {spec.llm}", settings=settings, prices=prices)


def plan_explain(store: Store, spec: ExplainSpec, prices: PriceTable | None = None,
                 batch: bool = False, settings: EngineSettings | None = None) -> Estimate:
    """What :func:`explain_features` would send, cost and take (``--dry-run``); sends
    nothing. Large selections are planned on a sample (:mod:`featurelens.llm.plan_sample`)."""
    from dataclasses import replace

    from featurelens.llm.plan_sample import sample_selection

    provider, model = split_llm_spec(spec.llm)
    get_registry().get("llm_provider", spec.llm)  # the name must exist; no client, no key needed
    explainer = make_explainer(spec)
    spec, explainer = resolve(spec, explainer, make_explainer)
    spec = offline_spec(explainer, spec)
    provider, model = split_llm_spec(spec.llm)
    sample, scale, planned, total = sample_selection(store, spec.selection)
    skipped: list[int] = []
    result = estimate(store, explain_jobs(store, explainer, replace(spec, where=sample.where, limit=sample.limit),
                                          on_skip=skipped.append),
                      provider, model, prices, batch, scale=scale, settings=settings,
                      sampled=(planned, total) if scale != 1.0 else None)
    result.skipped = round(sum(skipped) * scale)
    return result


def submit_explain(store: Store, spec: ExplainSpec, *, provider_options: dict[str, Any] | None = None,
                   prices: PriceTable | None = None) -> Submission:
    """``featurelens explain --batch-api``: submit the explain run's requests as provider batches."""
    spec, explainer = resolve(spec, make_explainer(spec), make_explainer)
    if effective_llm(explainer, spec.llm) != spec.llm:
        raise FeaturelensError(f"The {spec.explainer} explainer needs no LLM, so there is nothing to "
                               "submit; run featurelens explain without --batch-api.")
    count_features(store, spec.selection)
    provider = providers.build_provider(spec.llm, **(provider_options or {}))
    batch_client(provider)  # refuse before the run is recorded
    run_id = start_run(store, "explain", spec.config())
    return submit_jobs(store, provider, explain_jobs(store, explainer, spec, run_id),
                       run_id=run_id, purpose="explain")


def finish_from_batches(store: Store, config: dict[str, Any], prices: PriceTable, progress: bool) -> RunStats:
    """Write an explain run whose batch answers are all cached (``batches collect``)."""
    settings = EngineSettings(cache_only=True, progress=progress)
    return explain_features(store, ExplainSpec.from_config(config), settings=settings, prices=prices,
                            provider_defaults=False)
