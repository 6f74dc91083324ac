"""Explaining features: turn a selection of stored features into engine jobs.

:func:`explain_features` is the Python API behind ``featurelens explain`` and the
explain stage of ``featurelens run``. Features that already have an explanation from
the same explainer, LLM and options are skipped (their id is deterministic), so a rerun
after a crash only does what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from featurelens.core.cli.option_errors import bad_value, unknown_option
from featurelens.core.errors import FeaturelensError
from featurelens.core.gc_pause import handed_out
from featurelens.core.host.manager import create
from featurelens.core.host.protocols import (
    Explainer,
    ExplainerBase,
    FeatureRecord,
    LLMProvider,
    LLMResponse,
    ParseError,
    declared,
    example_fallbacks,
    example_kinds,
    example_width,
)
from featurelens.core.never_fired import split_never_fired
from featurelens.core.selection import Selection, count_features, stream_records
from featurelens.core.store.argument import StoreLike
from featurelens.core.store.database import Store
from featurelens.core.store.stored_ids import stored_ids
from featurelens.labelers import explain_grouped as grouped
from featurelens.labelers.explain_defaults import resolve
from featurelens.llm.batch.submit import Submission
from featurelens.llm.engine import EngineSettings, Job, RunStats
from featurelens.llm.offline import effective_llm, record_chunk
from featurelens.llm.offline_pool import OfflinePool, store_pages
from featurelens.llm.offline_pool.messages import answered, outcome
from featurelens.llm.plan import Estimate
from featurelens.llm.pricing import PriceTable
from featurelens.llm.stage import LabelingStage, LLMChoice

#: Longest explanation stored; explainers should clean and shorten, this is the last guard.
MAX_EXPLANATION_CHARS = 1000

#: ``json.dumps(value, default=str)``, one encoder for the millions of ids.
_JSON = json.JSONEncoder(default=str)


def explanation_id(dictionary_id: str, feature: int, explainer: str, llm: str,
                   options: dict[str, Any]) -> str:
    """Deterministic id: the same feature, explainer, LLM and options give the same id."""
    return explanation_ids([(dictionary_id, feature)], explainer, llm, options)[0]


def explanation_ids(keys: list[tuple[str, int]], explainer: str, llm: str, options: dict[str, Any]) -> list[str]:
    """:func:`explanation_id` of each ``(dictionary_id, feature)``: the hashed text is the JSON
    list ``[dictionary_id, feature, explainer, llm, options]`` (keys sorted), whose tail after
    the feature is the same for a whole chunk, so it is encoded once."""
    tail = json.dumps([explainer, llm, options], sort_keys=True, default=str)[1:]
    return [hashlib.sha256(f"[{_JSON.encode(d)}, {_JSON.encode(f)}, {tail}".encode()).hexdigest()[:32]
            for d, f in keys]


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
              run_id: str | None, options: dict[str, Any] | None = None):
    """The job's ``finish``; ``options``: ``spec.options``, when the caller has them already."""
    options = spec.options if options is None else options

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
            "options": json.dumps({**options, **evidence}, sort_keys=True, default=str),
            "run_id": run_id,
        }]}
    return finish


def explain_jobs(store: Store, explainer: Explainer, spec: ExplainSpec, run_id: str | None = None,
                 chunk_size: int = 256, on_skip: Callable[[int], None] | None = None, *,
                 skip_done: bool = True) -> Iterator[Job]:
    """One job per selected feature that has no explanation yet, streamed chunk by chunk.

    ``on_skip(n)`` is told how many features of each chunk were already explained;
    ``skip_done=False`` keeps them (``estimate`` prices the whole selection).
    Features that never fired are left out (:mod:`featurelens.core.never_fired`).
    """
    kinds = example_kinds(explainer)  # optional: which windows it reads
    options, method = spec.options, spec.method  # read once: a chunk holds thousands of jobs
    per_request = grouped.per_request(options)
    to_do = split_never_fired(store, spec.selection).to_do
    if declared(explainer, "reads_logit_effects", ExplainerBase):
        from featurelens.core.lazy_logits import ensure  # torch only when asked

        ensure(store, to_do)  # those a lazy extraction left pending, computed once and stored
    for records in stream_records(store, to_do, chunk_size, kinds, example_fallbacks(explainer),
                                  example_width(explainer)):
        pending: list[tuple[FeatureRecord, str]] = []
        keys = [(r.dictionary_id, r.feature) for r in records]
        ids = dict(zip(keys, explanation_ids(keys, spec.explainer, spec.llm, options)))
        done = stored_ids(store, "explanations", "explanation_id", list(ids.values()),
                          [r.feature for r in records]) if skip_done else set()
        if done and on_skip is not None:
            on_skip(len(done))
        page: deque[Job] = deque()
        for record in records:
            eid = ids[(record.dictionary_id, record.feature)]
            if eid in done:
                continue
            try:
                if not record.examples:
                    raise ParseError(f"feature {record.feature} has no stored examples to explain")
                requests = explainer.requests(record)
            except ParseError as error:  # recorded as this feature's failure, the run goes on
                page.append(Job(record.dictionary_id, record.feature, "explain", [], _refused(error),
                                method=method))
                continue
            if per_request > 1 and requests:
                pending.append((record, eid))
                continue
            page.append(Job(record.dictionary_id, record.feature, "explain", requests,
                            _finisher(explainer, spec, record, eid, run_id, options), method=method))
        page.extend(grouped.group_jobs(iter(pending), explainer, spec, per_request, run_id,
                                       MAX_EXPLANATION_CHARS))
        del records, pending  # the records live on in their jobs only (core/gc_pause.handed_out)
        yield from handed_out(page)


def pooled_explain_jobs(store: Store, explainer: Explainer, spec: ExplainSpec, pool: OfflinePool,
                        chunk_size: int = 256, on_skip: Callable[[int], None] | None = None) -> Iterator[Job]:
    """:func:`explain_jobs`'s jobs for an explainer that needs no LLM, finished by ``pool``'s
    worker processes (:class:`ExplainPages`): this process leaves out the features explained
    already and sends the rest with their records' tables; each job it yields carries its
    worker's rows (or error) for the engine to write here."""
    options, method = spec.options, spec.method
    to_do = split_never_fired(store, spec.selection).to_do
    if declared(explainer, "reads_logit_effects", ExplainerBase):
        from featurelens.core.lazy_logits import ensure

        ensure(store, to_do)  # written here, before any worker reads the features' rows

    def left(keys: list[tuple[str, int]]) -> list[list[Any]]:
        ids = explanation_ids(keys, spec.explainer, spec.llm, options)
        done = stored_ids(store, "explanations", "explanation_id", ids, [f for _, f in keys])
        if done and on_skip is not None:
            on_skip(len(done))
        return [[d, f, eid] for (d, f), eid in zip(keys, ids) if eid not in done]

    pages = store_pages(store, to_do, chunk_size, example_kinds(explainer), example_fallbacks(explainer), left)
    for jobs, results in pool.answers(pages):
        yield from handed_out(deque(Job(d, f, "explain", [], answered(result), method=method)
                                    for (d, f, _), result in zip(jobs, results, strict=True)
                                    if result is not None))


class ExplainPages:
    """An explain stage's pages in an offline worker (:mod:`featurelens.llm.offline_pool.worker`):
    the explainer built from the run's config, each job finished as :func:`explain_jobs` would."""

    def __init__(self, config: dict[str, Any], run_id: str | None, capabilities: frozenset[str] = frozenset()):
        self.spec = ExplainSpec.from_config(config)
        self.explainer = make_explainer(self.spec)
        self.options, self.run_id = self.spec.options, run_id
        self.width = example_width(self.explainer)

    def answer(self, jobs: list[list[Any]], records: list[FeatureRecord]) -> list[dict[str, Any] | None]:
        by_key = {(r.dictionary_id, r.feature): r for r in records}
        results: list[dict[str, Any] | None] = []
        for d, f, eid in jobs:
            record = by_key.get((d, f))
            if record is None:  # not in the features table: no job, as in explain_jobs
                results.append(None)
                continue
            try:
                if not record.examples:
                    raise ParseError(f"feature {record.feature} has no stored examples to explain")
                requests = self.explainer.requests(record)
            except ParseError as error:
                results.append({"parse_error": str(error)})
                continue
            if requests:
                raise FeaturelensError(f"The {self.spec.explainer} explainer says it needs no LLM, yet it "
                                       "asked one; fix its needs_llm, or run it with --processes 1.")
            results.append(outcome(_finisher(self.explainer, self.spec, record, eid, self.run_id, self.options)))
        return results


def _refused(error: ParseError):
    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        raise error
    return finish


class ExplainStage(LabelingStage):
    """The explain stage: one job per selected feature not yet explained (or per group of
    features, when requests carry several)."""

    kind = "explain"
    noun = "explainer"
    pages = "featurelens.labelers.explain:ExplainPages"

    @classmethod
    def prepare(cls, spec: ExplainSpec, provider_options: dict[str, Any] | None = None, *,
                provider_defaults: bool = True, llm: LLMChoice | None = None) -> "ExplainStage":
        """The stage of ``spec``: its explainer, the provider's ``features_per_request``
        filled in when ``provider_defaults`` (:mod:`.explain_defaults`; finishing a recorded
        run passes False, so it rebuilds exactly what was submitted), and the LLM its rows
        are recorded under. ``llm``: ``spec.llm`` and the provider options already resolved
        by the caller (``label`` resolves its ``--llm`` once for every stage)."""
        explainer = make_explainer(spec)
        if llm is None or llm.spec != spec.llm:
            llm = LLMChoice.resolve(spec.llm, provider_options)  # once: the defaults and the stage read it
        if provider_defaults:
            spec, explainer = resolve(spec, explainer, make_explainer, llm)
        recorded = offline_spec(explainer, spec)
        if recorded.llm != spec.llm:
            llm = LLMChoice.resolve(recorded.llm, llm.options)
        return cls(recorded, explainer, llm, offline=recorded.llm != spec.llm)

    @property
    def component_name(self) -> str:
        return self.spec.explainer

    @property
    def failure_method(self) -> str:
        return self.spec.method

    def count(self, store: Store) -> int:
        return count_features(store, self.spec.selection)

    def jobs(self, store: Store, spec: Any, run_id: str | None, capabilities: frozenset[str], *,
             on_skip: Callable[[int], None] | None = None, every_round: bool = False,
             pool: OfflinePool | None = None) -> Iterator[Job]:
        if pool is not None:
            return pooled_explain_jobs(store, self.component, spec, pool, record_chunk(self.component), on_skip)
        return explain_jobs(store, self.component, spec, run_id, chunk_size=record_chunk(self.component),
                            on_skip=on_skip)

    def selection_jobs(self, store: Store, selection: Selection, capabilities: frozenset[str], *,
                       every_round: bool = False) -> Iterator[Job]:
        spec = replace(self.spec, where=selection.where, dictionary_id=selection.dictionary_id,
                       limit=selection.limit)
        return explain_jobs(store, self.component, spec, skip_done=False)


def explain_features(store: Store | StoreLike, spec: ExplainSpec, *, provider: LLMProvider | None = None,
                     provider_options: dict[str, Any] | None = None,
                     settings: EngineSettings | None = None,
                     prices: PriceTable | None = None, provider_defaults: bool = True) -> RunStats:
    """Explain the selected features with ``spec.explainer`` on ``spec.llm``.

    Writes ``explanations`` (and ``llm_calls``, ``llm_cache``, ``failures``) as results
    arrive; returns the run's counters. ``provider`` overrides building one from
    ``spec.llm`` (tests, benchmarks, a client shared with other stages). ``store`` may
    be an open store or its path. ``provider_defaults``: see :meth:`ExplainStage.prepare`.
    """
    stage = ExplainStage.prepare(spec, provider_options, provider_defaults=provider_defaults)
    return stage.run(store, provider=provider, settings=settings, prices=prices)


def plan_explain(store: Store, spec: ExplainSpec, prices: PriceTable | None = None,
                 batch: bool = False, settings: EngineSettings | None = None) -> Estimate:
    """What :func:`explain_features` would send, cost and take (``--dry-run``); sends
    nothing (:meth:`LabelingStage.plan`)."""
    LLMChoice.resolve(spec.llm).check()  # the name must exist; no client, no key needed
    return ExplainStage.prepare(spec).plan(store, prices=prices, batch=batch, settings=settings)


def submit_explain(store: Store, spec: ExplainSpec, *, provider_options: dict[str, Any] | None = None,
                   prices: PriceTable | None = None) -> Submission:
    """``featurelens explain --batch-api``: submit the explain run's requests as provider batches."""
    stage = ExplainStage.prepare(spec, provider_options)
    return never_fired_noted(store, stage.spec.selection, stage.submit(store))


def never_fired_noted(store: Store, selection: Selection, submission: Submission) -> Submission:
    """``submission`` with "N never fired: skipped" among its notes when the selection held
    dead features (nothing was submitted for them)."""
    line = split_never_fired(store, selection).line()
    if line:
        submission.notes.append(line)
    return submission


def finish_from_batches(store: Store, config: dict[str, Any], prices: PriceTable, progress: bool) -> RunStats:
    """Write an explain run whose batch answers are all cached (``batches collect``)."""
    stage = ExplainStage.prepare(ExplainSpec.from_config(config), provider_defaults=False)
    return stage.finish_from_batches(store, prices, progress)
