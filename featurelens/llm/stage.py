"""One labeling stage: run, plan, submit and finish from batches, for explain and score alike.

Explaining features and scoring explanations differ in what a job is made of (an
explainer's requests and the explanation it writes; a scorer's rounds and the score
they give) and in what a run counts (features; explanations). The rest is one
skeleton, written here once:

- **run**: count the items (features that never fired are left out and their earlier
  failures cleared, :mod:`featurelens.core.never_fired`), start (or resume) the run,
  stream the jobs through the engine, mark the run done or failed
  (:func:`featurelens.llm.runs.run_labeling`); a component that needs no LLM may have its
  jobs finished by worker processes (:mod:`featurelens.llm.offline_pool`), this process
  still writing every row;
- **plan** (``--dry-run``): the same jobs on a sample of the selection, counted and
  priced without sending anything by the one planner (:mod:`featurelens.llm.plan`);
  ``estimate`` plans :meth:`LabelingStage.selection_jobs` (every selected feature's jobs,
  done or not) with the same planner on the same sample;
- **submit** (``--batch-api``): the same jobs as provider batches, the run recorded
  first so ``batches collect`` can finish it (under the stage's own run, or a larger one:
  ``label`` submits its explain stage under the label run);
- **finish from batches**: once every answer is cached, the next round of rounds-based
  jobs if one is due (:meth:`LabelingStage.next_round`), else the run again in
  cache-only mode (:meth:`LabelingStage.finish_cached`); ``label`` calls the two steps
  for each of its score stages under the label run.

A stage carries its spec (already resolved: provider defaults filled in, the LLM a
job of a component that needs none is recorded under), its component, and the job's
``--llm`` resolved once into an :class:`LLMChoice`: provider, model, options and the
provider's declaration, read by every step that needs them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMProvider, ProviderInfo
from featurelens.core.never_fired import (
    NeverFiredSplit,
    clear_never_fired_failures,
    split_never_fired,
)
from featurelens.core.store.argument import StoreLike, using_store
from featurelens.core.store.database import Store
from featurelens.llm import providers
from featurelens.llm.offline_pool import OfflinePool, PoolUnavailable, pool_processes
from featurelens.registry.components import Component, split_llm_spec

if TYPE_CHECKING:
    from featurelens.core.selection import Selection
    from featurelens.llm.batch.submit import Submission
    from featurelens.llm.engine import EngineSettings, Job, RunStats
    from featurelens.llm.plan import Estimate
    from featurelens.llm.pricing import PriceTable


@dataclass(frozen=True)
class LLMChoice:
    """A job's ``--llm`` and ``--provider-option`` values, resolved once: the spec split,
    the provider's registry entry and declaration read. Every step of a stage (defaults,
    plan, submit, run, finish) reads this object instead of splitting the spec again."""

    spec: str  #: ``provider:model``
    provider: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    info: ProviderInfo = field(default_factory=ProviderInfo)
    component: Component | None = None  #: the registry entry; ``None`` when no plugin registered it

    @classmethod
    def resolve(cls, spec: str, options: Mapping[str, Any] | None = None) -> "LLMChoice":
        """Split ``spec`` (one sentence when it is not ``provider:model``) and read the
        provider's declaration; the provider is not built and no key is needed."""
        provider, model = split_llm_spec(spec)
        component = providers.provider_component(provider)
        info = component.info if component is not None and component.info is not None else ProviderInfo()
        return cls(spec, provider, model, dict(options or {}), info, component)

    def check(self) -> None:
        """Refuse a provider no plugin registered (one sentence naming the known ones)."""
        if self.component is None:
            from featurelens.core.host.manager import get_registry

            get_registry().get("llm_provider", self.spec)

    @property
    def capabilities(self) -> frozenset[str]:
        """What the provider can do with these options, as it declares (no client built)."""
        return self.info.capabilities_for(self.options)

    def build(self) -> LLMProvider:
        """The provider itself (reads its key from the environment)."""
        return providers.build_provider(self, **self.options)


class LabelingStage(ABC):
    """The skeleton every labeling stage shares; a subclass supplies what differs."""

    kind: ClassVar[str]  #: ``runs.kind``: explain, score
    noun: ClassVar[str]  #: what the component is called in messages: explainer, scorer
    #: ``module:class`` of what finishes its jobs in an offline worker (llm/offline_pool).
    pages: ClassVar[str]

    def __init__(self, spec: Any, component: Any, llm: LLMChoice, *, offline: bool = False):
        self.spec = spec  #: resolved; ``spec.llm`` is the LLM its rows are recorded under
        self.component = component
        self.llm = llm
        self.offline = offline  #: the component needs no LLM, so ``spec.llm`` is offline:none

    # -- what differs ------------------------------------------------------------------
    @abstractmethod
    def count(self, store: Store) -> int:
        """Items the run covers (features, explanations); also checks the selection."""

    @abstractmethod
    def jobs(self, store: Store, spec: Any, run_id: str | None, capabilities: frozenset[str], *,
             on_skip: Any = None, every_round: bool = False, pool: "OfflinePool | None" = None) -> Iterator["Job"]:
        """The run's jobs for ``spec`` (the stage's own, or a sample of it when planning);
        ``every_round``: rounds-based jobs carry all their rounds at once (the upper bound);
        ``pool``: offline worker processes that finish the jobs (a component needing no LLM)."""

    @abstractmethod
    def selection_jobs(self, store: Store, selection: "Selection", capabilities: frozenset[str], *,
                       every_round: bool = False) -> Iterator["Job"]:
        """Every job labeling ``selection`` sends, none left out as already done (``estimate``
        prices a selection, the dry run what is left of a run); built by the same code as
        :meth:`jobs`. Their ``finish`` is never called: the planner only counts them."""

    @property
    @abstractmethod
    def component_name(self) -> str: ...

    @property
    def purpose(self) -> str:
        """``llm_calls.purpose`` of the batches it submits."""
        return self.kind

    @property
    def desc(self) -> str:
        """The progress bar's label."""
        return f"{self.kind} {self.spec.llm}"

    @property
    @abstractmethod
    def failure_method(self) -> str:
        """``failures.method`` of this stage's work (never-fired features' rows are cleared by it)."""

    def run_total(self, count: int, split: NeverFiredSplit) -> int | None:
        """The items a run works on, from :meth:`count` and the selection's never-fired split
        (``None``: nothing can be done and that is not an error); refuses a run with nothing
        to do when that is an error for this stage. By default, the features that fired."""
        return split.fired

    def next_round(self, store: Store, run_id: str | None = None) -> "RunStats | None":
        """After a batch collection: submit the next round when jobs need one (its stats),
        or ``None`` when every answer is in. ``run_id``: the run the batches belong to
        (by default the stage's own)."""
        return None

    # -- the skeleton ------------------------------------------------------------------
    def run(self, store: Store | StoreLike, *, provider: LLMProvider | None = None,
            settings: "EngineSettings | None" = None, prices: "PriceTable | None" = None) -> "RunStats":
        """Run (or resume) the stage: rows written as results arrive; the run's counters.
        ``provider`` overrides building one (tests, a client shared by ``label``'s stages)."""
        from featurelens.llm.engine import EngineSettings, RunStats
        from featurelens.llm.offline import record_chunk
        from featurelens.llm.runs import run_labeling

        if not isinstance(store, Store):  # a path: open it for the run
            with using_store(store) as opened:
                return self.run(opened, provider=provider, settings=settings, prices=prices)
        count = self.count(store)  # also checks the condition and the dictionary
        split = split_never_fired(store, self.spec.selection)
        total = self.run_total(count, split)
        if total is None:
            return RunStats(never_fired=split.never_fired)
        cleared = clear_never_fired_failures(store, self.spec.selection, self.purpose, self.failure_method)
        # the engine draws jobs a page of records at a time, so a finished chunk's records
        # are freed inside its pause and the cyclic collector never walks them (core/gc_pause)
        settings = replace(settings or EngineSettings(), chunk_size=record_chunk(self.component))
        processes = self.processes(total, settings.processes)
        pools: list[OfflinePool] = []

        def make_jobs(engine: Any, run_id: str, built: LLMProvider) -> Iterator["Job"]:
            engine.stats.never_fired = split.never_fired
            capabilities = frozenset(built.capabilities)
            pool = self._start_pool(run_id, capabilities, processes) if processes > 1 else None
            if pool is not None:
                pools.append(pool)
            return self.jobs(store, self.spec, run_id, capabilities, on_skip=engine.skip, pool=pool)

        try:
            stats = run_labeling(
                store, kind=self.kind, config=self.spec.config(), llm=self.spec.llm, provider=provider,
                provider_options=dict(self.llm.options), total=total, make_jobs=make_jobs,
                desc=self.desc, settings=settings, prices=prices, build=self.llm.build)
        finally:
            for pool in pools:
                pool.close()
        stats.resolved += cleared
        return stats

    def in_workers(self) -> bool:
        """Whether the component may run in offline worker processes when it needs no LLM
        (a scorer that reads the store itself may not)."""
        return True

    def processes(self, items: int, requested: int | None) -> int:
        """Worker processes for a run over ``items`` (1: none; :func:`pool_processes`)."""
        if not self.in_workers():
            return 1
        return pool_processes(self.component, self.noun, self.component_name, self.spec.config(), items, requested)

    def _start_pool(self, run_id: str, capabilities: frozenset[str], processes: int) -> "OfflinePool | None":
        """The workers, or ``None`` (the stage runs here) when they cannot build the component."""
        try:
            return OfflinePool(self.pages, self.spec.config(), run_id, capabilities, processes)
        except PoolUnavailable as why:
            logging.getLogger(__name__).warning("offline workers not used (%s); labeling in this process", why)
            return None

    def plan(self, store: Store, *, prices: "PriceTable | None" = None, batch: bool = False,
             settings: "EngineSettings | None" = None) -> "Estimate":
        """What :meth:`run` would send, cost and take (``--dry-run``); sends nothing. Large
        selections are planned on a sample (:mod:`featurelens.llm.plan_sample`); rounds-based
        jobs count every round (the upper bound; ``estimate`` gives the range)."""
        from featurelens.llm.plan import estimate
        from featurelens.llm.plan_sample import sample_selection

        self.llm.check()
        self.count(store)
        sample, scale, planned, total = sample_selection(store, self.spec.selection)
        skipped: list[int] = []
        sampled_spec = replace(self.spec, where=sample.where, limit=sample.limit)
        result = estimate(store, self.jobs(store, sampled_spec, None, self.llm.capabilities,
                                           on_skip=skipped.append, every_round=True),
                          self.llm.provider, self.llm.model, prices, batch, scale=scale, settings=settings,
                          sampled=(planned, total) if scale != 1.0 else None)
        result.skipped = round(sum(skipped) * scale)
        return result

    def submit(self, store: Store, *, run: "tuple[str, dict[str, Any]] | None" = None) -> "Submission":
        """``--batch-api``: record the run, then submit its requests as provider batches
        (for rounds-based jobs, the first round; each ``batches collect`` submits the next).
        ``run``: the ``(kind, config)`` to record the batches under when the stage is part of
        a larger run (``label``); by default the stage's own."""
        from featurelens.llm.batch.clients import batch_client
        from featurelens.llm.batch.submit import submit_jobs
        from featurelens.llm.runs import start_run

        if self.offline:
            raise FeaturelensError(
                f"The {self.component_name} {self.noun} needs no LLM, so there is nothing to submit; "
                f"run featurelens {run[0] if run else self.kind} without --batch-api.")
        self.count(store)
        provider = self.llm.build()
        client = batch_client(provider, self.llm.info)  # refuse before the run is recorded
        kind, config = run or (self.kind, self.spec.config())
        run_id = start_run(store, kind, config)
        return submit_jobs(store, provider, self.jobs(store, self.spec, run_id, frozenset(provider.capabilities)),
                           run_id=run_id, purpose=self.purpose, client=client)

    def finish_from_batches(self, store: Store, prices: "PriceTable", progress: bool, *,
                            run_id: str | None = None) -> "RunStats":
        """Write a run whose batch answers are all cached (``batches collect``): the next
        round when one is due (:meth:`next_round`), else every result, from the cache alone
        (:meth:`finish_cached`). ``run_id``: the run the batches belong to when it is not the
        stage's own (``label``)."""
        waiting = self.next_round(store, run_id)
        if waiting is not None:
            return waiting
        return self.finish_cached(store, prices, progress)

    def finish_cached(self, store: Store, prices: "PriceTable", progress: bool) -> "RunStats":
        """The run again in cache-only mode: every answer comes from the response cache."""
        from featurelens.llm.engine import EngineSettings

        return self.run(store, settings=EngineSettings(cache_only=True, progress=progress), prices=prices)
