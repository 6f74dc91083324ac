"""Explaining features: turn a selection of stored features into engine jobs.

:func:`explain_features` is the Python API behind ``featurelens explain`` and the
explain stage of ``featurelens run``. Features that already have an explanation from
the same explainer, LLM and options are skipped (their id is deterministic), so a rerun
after a crash only does what is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from featurelens.core.errors import FeaturelensError
from featurelens.core.plugins import create, get_registry
from featurelens.core.protocols import Explainer, FeatureRecord, LLMProvider, LLMResponse, ParseError
from featurelens.core.store import Store
from featurelens.labelers import explain_grouped as grouped
from featurelens.labelers.engine import EngineSettings, Job, RunStats
from featurelens.labelers.plan import Estimate, estimate
from featurelens.labelers.pricing import PriceTable
from featurelens.labelers.records import Selection, count_features, stream_records
from featurelens.labelers.runs import run_labeling
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

    def config(self) -> dict[str, Any]:
        return {"llm": self.llm, "explainer": self.explainer, "explainer_options": self.options,
                "where": self.where, "dictionary_id": self.dictionary_id, "limit": self.limit}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ExplainSpec":
        return cls(config["llm"], config["explainer"],
                   tuple(sorted((config.get("explainer_options") or {}).items())),
                   config.get("where"), config.get("dictionary_id"), config.get("limit"))


def make_explainer(spec: ExplainSpec) -> Explainer:
    """The explainer of ``spec``; an option it does not take is one clear sentence."""
    options = {k: v for k, v in spec.options.items() if k != grouped.OPTION}  # the job's, not the explainer's
    try:
        explainer = create("explainer", spec.explainer, **options)
        grouped.per_request(spec.options, getattr(explainer, "max_tokens", None))
        return explainer
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise FeaturelensError(
            f"The explainer {spec.explainer!r} does not take the option(s) "
            f"{', '.join(sorted(spec.options))} ({error}); see featurelens explain --help "
            "and the explainer's documentation for its options.") from None


def _finisher(explainer: Explainer, spec: ExplainSpec, record: FeatureRecord, eid: str,
              run_id: str | None):
    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        text = explainer.parse(record, [r for r in responses if r is not None])
        text = " ".join((text or "").split())
        if not text:
            raise ParseError("the explanation is empty")
        return {"explanations": [{
            "explanation_id": eid, "dictionary_id": record.dictionary_id, "feature": record.feature,
            "explainer": spec.explainer, "llm": spec.llm, "text": text[:MAX_EXPLANATION_CHARS],
            "options": json.dumps(spec.options, sort_keys=True, default=str), "run_id": run_id,
        }]}
    return finish


def explain_jobs(store: Store, explainer: Explainer, spec: ExplainSpec, run_id: str | None = None,
                 chunk_size: int = 256, on_skip: Callable[[int], None] | None = None) -> Iterator[Job]:
    """One job per selected feature that has no explanation yet, streamed chunk by chunk.

    ``on_skip(n)`` is told how many features of each chunk were already explained.
    """
    wanted = getattr(explainer, "example_kinds", None)  # optional: which windows it reads
    kinds = wanted() if callable(wanted) else wanted
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
                yield Job(record.dictionary_id, record.feature, "explain", [], _refused(error))
                continue
            if per_request > 1 and requests:
                pending.append((record, eid))
                continue
            yield Job(record.dictionary_id, record.feature, "explain", requests,
                      _finisher(explainer, spec, record, eid, run_id))
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


def explain_features(store: Store, spec: ExplainSpec, *, provider: LLMProvider | None = None,
                     provider_options: dict[str, Any] | None = None,
                     settings: EngineSettings | None = None,
                     prices: PriceTable | None = None) -> RunStats:
    """Explain the selected features with ``spec.explainer`` on ``spec.llm``.

    Writes ``explanations`` (and ``llm_calls``, ``llm_cache``, ``failures``) as results
    arrive; returns the run's counters. ``provider`` overrides building one from
    ``spec.llm`` (tests, benchmarks, a client shared with other stages).
    """
    explainer = make_explainer(spec)
    return run_labeling(
        store, kind="explain", config=spec.config(), llm=spec.llm, provider=provider,
        provider_options=provider_options, total=count_features(store, spec.selection),
        make_jobs=lambda engine, run_id, _provider: explain_jobs(
            store, explainer, spec, run_id, on_skip=engine.skip),
        desc=f"explain {spec.llm}", settings=settings, prices=prices)


def plan_explain(store: Store, spec: ExplainSpec, prices: PriceTable | None = None,
                 batch: bool = False) -> Estimate:
    """What :func:`explain_features` would send and cost (``--dry-run``); sends nothing."""
    provider, model = split_llm_spec(spec.llm)
    get_registry().get("llm_provider", spec.llm)  # the name must exist; no client, no key needed
    explainer = make_explainer(spec)
    count_features(store, spec.selection)
    skipped: list[int] = []
    result = estimate(store, explain_jobs(store, explainer, spec, on_skip=skipped.append),
                      provider, model, prices, batch)
    result.skipped = sum(skipped)
    return result
