"""Scoring stored explanations: turn a selection of features into batch-engine jobs.

:func:`score_features` is the Python API behind ``featurelens score`` and the score
stage of ``featurelens label``. One job scores one explanation with one scorer and one
simulator LLM; its ``score_id`` hashes exactly those, so a rerun (after a crash, or
after ``batches collect``) skips what is stored and the response cache answers what
was already paid for. Unreadable answers are counted in ``scores.n_parse_failures``
and described in ``failures``; an explanation that cannot be scored at all gets a
``failures`` row and no score, never a 0.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from featurelens.core.cli.option_errors import bad_value, unknown_option
from featurelens.core.errors import FeaturelensError
from featurelens.core.gc_pause import handed_out
from featurelens.core.host.manager import create
from featurelens.core.host.protocols import (
    FeatureRecord,
    LLMProvider,
    LLMRequest,
    LLMResponse,
    ParseError,
    Scorer,
    ScorerBase,
    declared,
    example_fallbacks,
    example_kinds,
    example_width,
    score_takes_capabilities,
)
from featurelens.core.never_fired import NeverFiredSplit, split_never_fired
from featurelens.core.selection import Selection, count_features, stream_records
from featurelens.core.store.argument import StoreLike
from featurelens.core.store.database import Store
from featurelens.core.store.stored_ids import stored_ids
from featurelens.llm.engine import EngineSettings, Job, RunStats
from featurelens.llm.offline import effective_llm, record_chunk
from featurelens.llm.offline_pool import OfflinePool, store_pages
from featurelens.llm.offline_pool.messages import answered, outcome
from featurelens.llm.pricing import PriceTable
from featurelens.llm.stage import LabelingStage, LLMChoice

Finish = Callable[[list["LLMResponse | None"]], dict[str, list[dict[str, Any]]]]


#: ``json.dumps(value, default=str)``, with one encoder for the millions of score rows.
_JSON = json.JSONEncoder(default=str)


def score_id(explanation_id: str, scorer: str, llm: str, options: dict[str, Any]) -> str:
    """Deterministic id: the same explanation, scorer, LLM and options give the same id."""
    return score_ids([explanation_id], scorer, llm, options)[0]


def score_ids(explanation_ids: list[str], scorer: str, llm: str, options: dict[str, Any]) -> list[str]:
    """:func:`score_id` of each explanation: the hashed text is the JSON list
    ``[explanation_id, scorer, llm, options]`` (keys sorted), whose tail after the id is the
    same for a whole chunk, so it is encoded once."""
    tail = json.dumps([scorer, llm, options], sort_keys=True, default=str)[1:]
    return [hashlib.sha256(f"[{_JSON.encode(eid)}, {tail}".encode()).hexdigest()[:32] for eid in explanation_ids]


@dataclass(frozen=True)
class ScoreSpec:
    """Everything that identifies a score job (stored as the run's config)."""

    llm: str
    scorer: str = "simulation"
    scorer_options: tuple[tuple[str, Any], ...] = ()
    where: str | None = None
    dictionary_id: str | None = None
    limit: int | None = None
    explainer: str | None = None  #: only explanations by this explainer
    explained_by: str | None = None  #: only explanations written by this provider:model

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.scorer_options)

    @property
    def selection(self) -> Selection:
        return Selection(self.where, self.dictionary_id, self.limit)

    def method(self, explanation_id: str) -> str:
        """failures.method of scoring one explanation: scorer, LLM, options, explanation."""
        return f"{self.method_prefix} of explanation {explanation_id}"

    @property
    def method_prefix(self) -> str:
        """:meth:`method` without the explanation: scorer, LLM and options."""
        options = f" {json.dumps(self.options, sort_keys=True, default=str)}" if self.options else ""
        return f"{self.scorer} by {self.llm}{options}"

    def config(self) -> dict[str, Any]:
        return {"llm": self.llm, "scorer": self.scorer, "scorer_options": self.options,
                "where": self.where, "dictionary_id": self.dictionary_id, "limit": self.limit,
                "explainer": self.explainer, "explained_by": self.explained_by}

    def explanation_filter(self, alias: str = "") -> tuple[str, list[Any]]:
        """`` AND ...`` conditions on the explanations table for --explainer and
        --explained-by, with their parameters (``alias``: the table's alias, if any)."""
        prefix = f"{alias}." if alias else ""
        sql, params = "", []
        if self.explainer:
            sql += f" AND {prefix}explainer = ?"
            params.append(self.explainer)
        if self.explained_by:
            sql += f" AND {prefix}llm = ?"
            params.append(self.explained_by)
        return sql, params

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ScoreSpec":
        return cls(config["llm"], config["scorer"],
                   tuple(sorted((config.get("scorer_options") or {}).items())),
                   config.get("where"), config.get("dictionary_id"), config.get("limit"),
                   config.get("explainer"), config.get("explained_by"))


def build_scorer(spec: ScoreSpec) -> Scorer:
    """The scorer with its options; an unknown option is one clear sentence."""
    try:
        return create("scorer", spec.scorer, **spec.options)
    except (TypeError, ValueError) as error:
        if not unknown_option(error):
            raise bad_value("scorer", spec.scorer, dict(spec.options), error) from None
        raise FeaturelensError(
            f"Scorer {spec.scorer!r} does not take the options {sorted(spec.options)} ({error}); "
            "check the -o KEY=VALUE names in its docstring.") from None


def _explanations(store: Store, keys: list[tuple[str, int]], spec: ScoreSpec) -> list[tuple[str, int, str, str]]:
    """``(dictionary_id, feature, explanation_id, text)`` of the features' explanations: one
    join bounded by the chunk's feature range, so DuckDB reads only those rows' blocks."""
    if not keys:
        return []
    import pyarrow as pa

    features = [f for _, f in keys]
    extra, extra_params = spec.explanation_filter("x")
    view = "_score_keys"
    store.con.register(view, pa.table({"dictionary_id": [d for d, _ in keys],
                                       "feature": pa.array(features, pa.int32())}))
    try:
        return store.execute(
            f"SELECT x.dictionary_id, x.feature, x.explanation_id, x.text FROM explanations x "
            f"JOIN {view} k USING (dictionary_id, feature) "
            f"WHERE x.feature BETWEEN {min(features)} AND {max(features)}{extra} "
            "ORDER BY x.dictionary_id, x.feature, x.explanation_id", extra_params)
    finally:
        store.con.unregister(view)


def _takes_capabilities(scorer: Scorer) -> bool:
    """Whether ``scorer.score`` takes ``capabilities`` (asked once a scorer class: reading a
    signature costs more than scoring a feature offline)."""
    if "score" in getattr(scorer, "__dict__", {}):  # set on the instance: ask it
        return score_takes_capabilities(scorer)
    cls = type(scorer)
    if cls not in _TAKES_CAPABILITIES:
        _TAKES_CAPABILITIES[cls] = score_takes_capabilities(scorer)
    return _TAKES_CAPABILITIES[cls]


_TAKES_CAPABILITIES: dict[type, bool] = {}


@dataclass(frozen=True)
class _Shared:
    """What every score row of one stream shares, worked out once (a chunk holds thousands)."""

    stage: str
    method: str  #: :meth:`ScoreSpec.method_prefix`
    options: str  #: the options as stored
    takes_capabilities: bool

    @classmethod
    def of(cls, scorer: Scorer, spec: ScoreSpec) -> "_Shared":
        return cls(f"score:{spec.scorer}", spec.method_prefix,
                   json.dumps(spec.options, sort_keys=True, default=str), _takes_capabilities(scorer))


def _finisher(scorer: Scorer, spec: ScoreSpec, record: FeatureRecord, eid: str, text: str,
              sid: str, capabilities: frozenset[str], run_id: str | None,
              shared: _Shared | None = None) -> Finish:
    shared = shared or _Shared.of(scorer, spec)
    stage, takes_capabilities = shared.stage, shared.takes_capabilities

    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        if takes_capabilities:
            result = scorer.score(record, text, responses, capabilities=capabilities)  # type: ignore[call-arg]
        else:
            result = scorer.score(record, text, responses)
        reasons = _summary(result.details.get("parse_failures") if isinstance(result.details, dict) else None) \
            if result.status == "failed" or result.n_parse_failures else ""
        if result.status == "failed":
            raise ParseError(f"no answer could be read ({result.n_parse_failures} unreadable): {reasons}")
        rows: dict[str, list[dict[str, Any]]] = {"scores": [{
            "score_id": sid, "explanation_id": eid, "dictionary_id": record.dictionary_id,
            "feature": record.feature, "scorer": spec.scorer, "llm": spec.llm,
            "score": result.score, "status": result.status,
            "metrics": _JSON.encode(result.metrics),
            "details": _JSON.encode(result.details),
            "options": shared.options,
            "n_parse_failures": int(result.n_parse_failures), "run_id": run_id,
            **window_columns(result.metrics)}]}
        if result.n_parse_failures:
            rows["failures"] = [{"run_id": run_id, "stage": stage, "dictionary_id": record.dictionary_id,
                                 "feature": record.feature,
                                 "method": f"{shared.method} of explanation {eid} (windows)",
                                 "resolved": True,  # the score is stored; this row is its caveat
                                 "reason": f"{result.n_parse_failures} unreadable answer(s) left out of "
                                           f"score {sid}: {reasons}"[:2000]}]
        return rows
    return finish


def window_columns(metrics: Any) -> dict[str, Any]:
    """``n_windows``, ``ci_low``, ``ci_high`` of a score, from its metrics when the scorer
    reports them (built-ins do; a plugin's score without them stores NULLs)."""
    metrics = metrics if isinstance(metrics, dict) else {}
    interval = metrics.get("interval")
    n = metrics.get("n_windows_scored")
    low, high = (interval if isinstance(interval, (list, tuple)) and len(interval) == 2 else (None, None))
    return {"n_windows": int(n) if isinstance(n, int) else None,
            "ci_low": None if low is None else float(low), "ci_high": None if high is None else float(high)}


def _follow_up(more: Callable[..., Any], record: FeatureRecord, text: str, capabilities: frozenset[str]):
    """The engine's ``follow_up`` for scorers that score in rounds (their ``more_requests``)."""
    return lambda responses: more(record, text, responses, capabilities)


def _summary(reasons: list[str] | None) -> str:
    """Distinct reasons with their counts, most frequent first: short enough to read."""
    counts = Counter(reasons or [])
    return "; ".join(f"{reason} (x{n})" if n > 1 else reason for reason, n in counts.most_common(5))[:600]


def _no_examples(record: FeatureRecord) -> Finish:
    def finish(responses: list[LLMResponse | None]) -> dict[str, list[dict[str, Any]]]:
        raise ParseError(f"feature {record.feature} has no stored examples to score against")
    return finish


def attach_store(scorer: Scorer, store: Store) -> None:
    """Give a scorer that reads more of the store (optional ``use_store``) the open store."""
    use_store = declared(scorer, "use_store", ScorerBase)
    if callable(use_store):
        use_store(store)


def _requests(scorer: Scorer, record: FeatureRecord, text: str, capabilities: frozenset[str],
              every_round: bool) -> list[LLMRequest]:
    """The requests scoring ``text`` on ``record`` starts with; ``every_round``: all rounds of
    an adaptive scorer at once (``all_requests``; planning counts the upper bound)."""
    build = declared(scorer, "all_requests", ScorerBase) if every_round else None
    return (build or scorer.requests)(record, text, capabilities)


#: Stands in for a feature's explanation where none is stored yet when scoring is planned
#: (``estimate``, ``label --dry-run``): about the length of a real one.
PLACEHOLDER_EXPLANATION = "a typical explanation of about ten words describing what tokens the feature fires on"


def planned_score_jobs(store: Store, scorer: Scorer, selection: Selection, capabilities: frozenset[str], *,
                       purpose: str, every_round: bool = False, stored: bool = True) -> Iterator[Job]:
    """One job per selected feature with examples, scoring its stored explanation (the first by
    text; ``stored=False``, or none stored: :data:`PLACEHOLDER_EXPLANATION`), whether scored
    already or not: what scoring the selection sends, for the planner."""
    attach_store(scorer, store)
    kinds = example_kinds(scorer)
    to_do = split_never_fired(store, selection).to_do
    for records in stream_records(store, to_do, 256, kinds, example_fallbacks(scorer), example_width(scorer)):
        texts = _first_explanations(store, records) if stored else {}
        for record in records:
            if not record.examples:
                continue  # nothing to score against, nothing sent
            text = texts.get((record.dictionary_id, record.feature), PLACEHOLDER_EXPLANATION)
            yield Job(record.dictionary_id, record.feature, purpose,
                      _requests(scorer, record, text, capabilities, every_round), _no_examples(record))


def _first_explanations(store: Store, records: list[FeatureRecord]) -> dict[tuple[str, int], str]:
    if not records:
        return {}
    features = [r.feature for r in records]
    keys = " OR ".join("(dictionary_id = ? AND feature = ?)" for _ in records)
    params = [v for r in records for v in (r.dictionary_id, r.feature)]
    rows = store.execute(f"SELECT dictionary_id, feature, min(text) FROM explanations WHERE feature BETWEEN "
                         f"{min(features)} AND {max(features)} AND ({keys}) GROUP BY dictionary_id, feature",
                         params)
    return {(d, f): text for d, f, text in rows}


def score_jobs(store: Store, scorer: Scorer, spec: ScoreSpec, capabilities: frozenset[str],
               run_id: str | None = None, chunk_size: int = 256,
               on_skip: Callable[[int], None] | None = None, every_round: bool = False) -> Iterator[Job]:
    """One job per (selected feature, explanation) not yet scored, streamed chunk by chunk.

    ``every_round``: jobs carry all rounds of an adaptive scorer at once (dry runs: an upper bound).
    Features that never fired are left out (:mod:`featurelens.core.never_fired`)."""
    options = {**spec.options}
    attach_store(scorer, store)
    kinds = example_kinds(scorer)  # optional: which windows it reads
    to_do = split_never_fired(store, spec.selection).to_do
    shared = _Shared.of(scorer, spec)  # read once: a chunk holds thousands of jobs
    build = (declared(scorer, "all_requests", ScorerBase) if every_round else None) or scorer.requests
    rounds = None if every_round else declared(scorer, "more_requests", ScorerBase)
    stage = shared.stage
    prepare = declared(scorer, "prepare_chunk", ScorerBase)
    for records in stream_records(store, to_do, chunk_size, kinds, example_fallbacks(scorer),
                                  example_width(scorer)):
        by_key = {(r.dictionary_id, r.feature): r for r in records}
        rows = _explanations(store, [(r.dictionary_id, r.feature) for r in records], spec)
        ids = score_ids([eid for _, _, eid, _ in rows], spec.scorer, spec.llm, options)
        done = stored_ids(store, "scores", "score_id", ids, [r.feature for r in records], {"scorer": spec.scorer})
        if done and on_skip is not None:
            on_skip(len(done))
        if callable(prepare):  # the engine draws jobs with the collector paused (core/gc_pause)
            prepare([(by_key[(d, f)], text) for (d, f, _, text), sid in zip(rows, ids)
                     if sid not in done and by_key[(d, f)].examples])
        page: deque[Job] = deque()
        for (dictionary_id, feature, eid, text), sid in zip(rows, ids):
            if sid in done:
                continue
            record = by_key[(dictionary_id, feature)]
            method = f"{shared.method} of explanation {eid}"
            if not record.examples:
                page.append(Job(dictionary_id, feature, stage, [], _no_examples(record), method=method))
                continue
            requests = build(record, text, capabilities)
            page.append(Job(dictionary_id, feature, stage, requests,
                            _finisher(scorer, spec, record, eid, text, sid, capabilities, run_id, shared),
                            method=method,
                            follow_up=_follow_up(rounds, record, text, capabilities) if callable(rounds) else None))
        del records, by_key  # the records live on in their jobs only (core/gc_pause.handed_out)
        yield from handed_out(page)


def pooled_score_jobs(store: Store, scorer: Scorer, spec: ScoreSpec, pool: OfflinePool,
                      chunk_size: int = 256, on_skip: Callable[[int], None] | None = None) -> Iterator[Job]:
    """:func:`score_jobs`'s jobs for a scorer that needs no LLM, finished by ``pool``'s worker
    processes (:class:`ScorePages`): this process reads each page's explanations, leaves out
    what is scored already and sends the rest with their records' tables; each job it yields
    carries its worker's rows (or error) for the engine to write here."""
    shared = _Shared.of(scorer, spec)
    to_do = split_never_fired(store, spec.selection).to_do

    def left(keys: list[tuple[str, int]]) -> list[list[Any]]:
        rows = _explanations(store, keys, spec)
        ids = score_ids([eid for _, _, eid, _ in rows], spec.scorer, spec.llm, spec.options)
        done = stored_ids(store, "scores", "score_id", ids, [f for _, f in keys], {"scorer": spec.scorer})
        if done and on_skip is not None:
            on_skip(len(done))
        return [[d, f, eid, text, sid] for (d, f, eid, text), sid in zip(rows, ids) if sid not in done]

    pages = store_pages(store, to_do, chunk_size, example_kinds(scorer), example_fallbacks(scorer), left)
    for jobs, results in pool.answers(pages):
        yield from handed_out(deque(
            Job(d, f, shared.stage, [], answered(result), method=f"{shared.method} of explanation {eid}")
            for (d, f, eid, _, _), result in zip(jobs, results, strict=True)))


class ScorePages:
    """A score stage's pages in an offline worker (:mod:`featurelens.llm.offline_pool.worker`):
    the scorer built from the run's config, each job finished as :func:`score_jobs` would."""

    def __init__(self, config: dict[str, Any], run_id: str | None, capabilities: frozenset[str]):
        self.spec = ScoreSpec.from_config(config)
        self.scorer = build_scorer(self.spec)
        self.run_id, self.capabilities = run_id, capabilities
        self.shared = _Shared.of(self.scorer, self.spec)
        self.width = example_width(self.scorer)
        self.prepare = declared(self.scorer, "prepare_chunk", ScorerBase)

    def answer(self, jobs: list[list[Any]], records: list[FeatureRecord]) -> list[dict[str, Any] | None]:
        by_key = {(r.dictionary_id, r.feature): r for r in records}
        if callable(self.prepare):
            self.prepare([(by_key[(d, f)], text) for d, f, _, text, _ in jobs if by_key[(d, f)].examples])
        results: list[dict[str, Any] | None] = []
        for d, f, eid, text, sid in jobs:
            record = by_key[(d, f)]
            if not record.examples:
                results.append(outcome(_no_examples(record)))
                continue
            if self.scorer.requests(record, text, self.capabilities):
                raise FeaturelensError(f"The {self.spec.scorer} scorer says it needs no LLM, yet it asked "
                                       "one; fix its needs_llm, or run it with --processes 1.")
            results.append(outcome(_finisher(self.scorer, self.spec, record, eid, text, sid, self.capabilities,
                                             self.run_id, self.shared)))
        return results


def count_explanations(store: Store, spec: ScoreSpec) -> int:
    """How many explanations the spec covers (checks the selection first)."""
    count_features(store, spec.selection)
    condition, params = spec.selection.condition()
    limit = f"LIMIT {int(spec.limit)}" if spec.limit is not None else ""
    extra, extra_params = spec.explanation_filter("e")
    return store.execute(
        f"SELECT count(*) FROM explanations e JOIN (SELECT dictionary_id, feature FROM features "
        f"WHERE {condition} ORDER BY dictionary_id, feature {limit}) f USING (dictionary_id, feature) "
        f"WHERE TRUE{extra}", params + extra_params)[0][0]


class ScoreStage(LabelingStage):
    """The score stage: one job per (selected feature, explanation) not yet scored."""

    kind = "score"
    noun = "scorer"
    pages = "featurelens.scorers.score_jobs:ScorePages"

    @classmethod
    def prepare(cls, spec: ScoreSpec, provider_options: dict[str, Any] | None = None, *,
                llm: LLMChoice | None = None) -> "ScoreStage":
        """The stage of ``spec``: its scorer and the LLM its rows are recorded under.
        ``llm``: ``spec.llm`` and the provider options already resolved by the caller
        (``label`` resolves its ``--llm`` once for every stage)."""
        scorer = build_scorer(spec)
        recorded = replace(spec, llm=effective_llm(scorer, spec.llm))
        if llm is None or llm.spec != recorded.llm:
            llm = LLMChoice.resolve(recorded.llm, llm.options if llm is not None else provider_options)
        return cls(recorded, scorer, llm, offline=recorded.llm != spec.llm)

    @property
    def component_name(self) -> str:
        return self.spec.scorer

    @property
    def purpose(self) -> str:
        return f"score:{self.spec.scorer}"

    @property
    def desc(self) -> str:
        return f"score {self.spec.scorer} {self.spec.llm}"

    def count(self, store: Store) -> int:
        return count_explanations(store, self.spec)

    @property
    def failure_method(self) -> str:
        return f"{self.spec.scorer} by {self.spec.llm}"

    def run_total(self, count: int, split: NeverFiredSplit) -> int | None:
        if count == 0 and split.never_fired and not split.fired:
            return None  # nothing can be scored; not a failure
        if count == 0:
            raise FeaturelensError(
                "No explanations match this selection; run featurelens explain first (or featurelens "
                "label, which explains then scores), or loosen --where / --explainer / --explained-by.")
        return count

    def jobs(self, store: Store, spec: Any, run_id: str | None, capabilities: frozenset[str], *,
             on_skip: Callable[[int], None] | None = None, every_round: bool = False,
             pool: OfflinePool | None = None) -> Iterator[Job]:
        if pool is not None:
            return pooled_score_jobs(store, self.component, spec, pool, record_chunk(self.component), on_skip)
        return score_jobs(store, self.component, spec, capabilities, run_id,
                          chunk_size=record_chunk(self.component), on_skip=on_skip,
                          every_round=every_round)

    def in_workers(self) -> bool:
        """A scorer that reads the store itself (``use_store``) or scores in rounds runs here."""
        return not (callable(declared(self.component, "use_store", ScorerBase))
                    or callable(declared(self.component, "more_requests", ScorerBase)))

    def selection_jobs(self, store: Store, selection: Selection, capabilities: frozenset[str], *,
                       every_round: bool = False, stored: bool = True) -> Iterator[Job]:
        """Every selected feature's scoring jobs (:func:`planned_score_jobs`); ``stored=False``:
        each with the placeholder explanation (scoring planned before explaining)."""
        return planned_score_jobs(store, self.component, selection, capabilities, purpose=self.purpose,
                                  every_round=every_round, stored=stored)

    def next_round(self, store: Store, run_id: str | None = None) -> RunStats | None:
        """Adaptive scorers: submit the next round of the jobs that need one
        (:mod:`featurelens.scorers.batch_rounds`)."""
        from featurelens.llm.batch.clients import batch_client
        from featurelens.llm.runs import run_id_for
        from featurelens.scorers.batch_rounds import advance

        if self.offline:
            return None  # a scorer that needs no LLM sends no rounds
        provider = self.llm.build()
        client = batch_client(provider, self.llm.info)
        run_id = run_id or run_id_for(self.kind, self.spec.config())
        jobs = self.jobs(store, self.spec, run_id, frozenset(provider.capabilities))
        return advance(store, provider, jobs, run_id=run_id, purpose=self.purpose, label=self.spec.scorer,
                       client=client)


def score_features(store: Store | StoreLike, spec: ScoreSpec, *, provider: LLMProvider | None = None,
                   provider_options: dict[str, Any] | None = None,
                   settings: EngineSettings | None = None,
                   prices: PriceTable | None = None) -> RunStats:
    """Score the selected features' explanations with ``spec.scorer`` on ``spec.llm``.

    Writes ``scores`` (and ``llm_calls``, ``llm_cache``, ``failures``) as results
    arrive; returns the run's counters. ``provider`` overrides building one from
    ``spec.llm`` (tests, benchmarks, ``label`` sharing one client).
    """
    stage = ScoreStage.prepare(spec, provider_options)
    return stage.run(store, provider=provider, settings=settings, prices=prices)


def provider_capabilities(spec: ScoreSpec, provider_options: dict[str, Any] | None = None) -> frozenset[str]:
    """What the simulator LLM can do, for a dry run: as its provider declares for these
    options (no client is built, no key needed)."""
    llm = LLMChoice.resolve(spec.llm, provider_options)
    llm.check()
    return llm.capabilities


def plan_score(store: Store, spec: ScoreSpec, prices: PriceTable | None = None, batch: bool = False,
               provider_options: dict[str, Any] | None = None, settings: EngineSettings | None = None):
    """What :func:`score_features` would send, cost and take (``--dry-run``); sends nothing
    (:meth:`LabelingStage.plan`: every round of an adaptive scorer, the upper bound)."""
    return ScoreStage.prepare(spec, provider_options).plan(store, prices=prices, batch=batch, settings=settings)


def plan_score_before_explaining(store: Store, spec: ScoreSpec, prices: PriceTable | None = None,
                                 provider_options: dict[str, Any] | None = None,
                                 settings: EngineSettings | None = None):
    """What scoring would cost once every selected feature has one explanation
    (``label --dry-run``): the same requests, with a placeholder explanation."""
    from featurelens.llm.plan import estimate
    from featurelens.llm.plan_sample import sample_selection

    stage = ScoreStage.prepare(spec, provider_options)
    stage.llm.check()
    sample, scale, planned, total = sample_selection(store, stage.spec.selection)
    jobs = stage.selection_jobs(store, sample, stage.llm.capabilities, every_round=True, stored=False)
    return estimate(store, jobs, stage.llm.provider, stage.llm.model, prices, scale=scale, settings=settings,
                    sampled=(planned, total) if scale != 1.0 else None)


def submit_score(store: Store, spec: ScoreSpec, *, provider_options: dict[str, Any] | None = None):
    """``featurelens score --batch-api``: submit the score run's requests as provider batches
    (adaptive scorers: the first round; each ``batches collect`` submits the next)."""
    return ScoreStage.prepare(spec, provider_options).submit(store)


def finish_from_batches(store: Store, config: dict[str, Any], prices: PriceTable, progress: bool) -> RunStats:
    """Write a score run whose batch answers are all cached (``batches collect``): submit the
    next round of adaptive jobs if any needs one, else write every score."""
    return ScoreStage.prepare(ScoreSpec.from_config(config)).finish_from_batches(store, prices, progress)
