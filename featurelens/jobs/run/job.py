"""``featurelens run``: the whole job on the embedded default, as one resumable command.

Stages, each a call into another area's public Python API:

1. model    - the embedded SmolLM2 (:func:`featurelens.core.model.embedded.embedded_model_path`)
2. train    - a small dictionary at one hookpoint, on the default corpus
3. extract  - statistics and examples of every feature into the store
4. label    - every feature that fired, with the token-lookup explainer (no LLM)
5. offline  - every label scored without an LLM (token-check, embedding)
6. explain  - a sample of features, with the local LLM (or ``--llm``)
7. score    - simulation scoring of that sample with the LLM, and offline scores for it
8. embed    - every explanation embedded with the installed sentence model
   (``--embeddings local``; ``none`` leaves it to ``featurelens search``'s first query)

Every stage is idempotent against the store (and the run folder next to it): it
skips what is already there, and the stages it calls resume their own partial work,
so rerunning ``featurelens run`` after a kill continues instead of starting over.
The run ends with :func:`summary`: the best token-lookup labels with a top example to
check them against, the LLM sample's best, where the store is, and what to run next.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from featurelens.core.store.argument import StoreLike, using_store
from featurelens.core.store.database import Store
from featurelens.jobs.run import stages as run_stages
from featurelens.jobs.run.context import (  # noqa: F401
    Echo,
    RunContext,
    RunOptions,
    Stage,
    StageResult,
    workdir_for,
)


@dataclass
class RunReport:
    stages: list[StageResult]
    dictionary_id: str
    complete: bool


def run_pipeline(store_path: Path, options: RunOptions, stages: list[tuple[str, Stage]] | None = None,
                 echo: Echo = print) -> RunReport:
    """Run every stage in order; each prints a header, shows its own progress bar and resumes."""
    from featurelens.core.errors import FeaturelensError
    from featurelens.core.store.explanation_search import SEARCH_EMBEDDINGS

    if options.embeddings not in SEARCH_EMBEDDINGS:  # before hours of stages, not after them
        raise FeaturelensError(f"Unknown --embeddings {options.embeddings!r}; featurelens search reads "
                               f"{', '.join(SEARCH_EMBEDDINGS)}.")
    chosen = stages if stages is not None else run_stages.default_stages()
    workdir = workdir_for(store_path)
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[StageResult] = []
    with Store.open(store_path) as store:
        context = RunContext(store, options, workdir, echo)
        _record_run(store, options, "running")
        for number, (name, stage) in enumerate(chosen, 1):
            echo(f"[{number}/{len(chosen)}] {name}")
            started = time.perf_counter()
            try:
                result = stage(context)
            except BaseException:
                _record_run(store, options, "failed", {r.name: r.status for r in results} | {name: "failed"})
                raise
            result.seconds = time.perf_counter() - started
            results.append(result)
            echo(f"      {result.status}: {result.detail} ({result.seconds:.0f} s)")
            if result.status == "unavailable":
                break
        complete = all(r.status in ("done", "skipped") for r in results) and len(results) == len(chosen)
        _record_run(store, options, "done" if complete else "failed",
                    {r.name: r.status for r in results})
    return RunReport(results, str(context.values.get("dictionary_id", options.dictionary_id)), complete)


def _record_run(store: Store, options: RunOptions, status: str, progress: dict[str, Any] | None = None) -> None:
    """One ``runs`` row per distinct set of options: a rerun updates it, never duplicates it."""
    import featurelens

    run_id = "run-" + options.fingerprint(*RunOptions.__dataclass_fields__)
    with store.transaction():
        if status == "running":
            store.execute(
                "INSERT OR REPLACE INTO runs (run_id, kind, config, status, featurelens_version) "
                "VALUES (?, 'run', ?, ?, ?)",
                [run_id, json.dumps(asdict(options)), status, featurelens.__version__])
        else:
            store.execute(
                "UPDATE runs SET status = ?, progress = ?, finished_at = current_timestamp WHERE run_id = ?",
                [status, json.dumps(progress or {}), run_id])


@dataclass
class Summary:
    store: Path
    dictionary_id: str
    n_features: int
    n_alive: int
    n_explained: int
    n_scored: int
    n_failures: int
    best: list[dict[str, Any]]
    #: Best token-lookup labels with their offline scores and a top example (pipeline_labels).
    labels: list[dict[str, Any]] = field(default_factory=list)
    #: The token-lookup label of each feature in ``best``, shown beside the LLM's.
    lookup: dict[int, str] = field(default_factory=dict)
    #: Scores stored without a value (status undefined), e.g. nothing to compare with.
    n_undefined: int = 0


def summarize(store_path: StoreLike, dictionary_id: str, top: int = 5) -> Summary:
    """Counts, the best token-lookup labels and the best LLM-scored features, read-only
    (a path or an open store)."""
    from featurelens.jobs.run import labels as run_labels
    from featurelens.llm.offline import OFFLINE_LLM

    with using_store(store_path, read_only=True) as store:
        counts = store.execute(
            "SELECT (SELECT count(*) FROM features WHERE dictionary_id = ?), "
            "(SELECT count(*) FROM features WHERE dictionary_id = ? AND fire_count > 0), "
            "(SELECT count(DISTINCT feature) FROM explanations WHERE dictionary_id = ?), "
            "(SELECT count(*) FROM scores WHERE dictionary_id = ? AND status = 'ok'), "
            "(SELECT count(*) FROM failures WHERE dictionary_id = ?), "
            "(SELECT count(*) FROM scores WHERE dictionary_id = ? AND status = 'undefined')",
            [dictionary_id] * 6)[0]
        *counts, undefined = counts
        best = store.sql(
            "SELECT s.feature, s.score, s.scorer, e.text, f.density FROM scores s "
            "JOIN explanations e USING (explanation_id) "
            "JOIN features f ON f.dictionary_id = s.dictionary_id AND f.feature = s.feature "
            "WHERE s.dictionary_id = ? AND s.status = 'ok' AND s.llm <> ? AND e.llm <> ? "
            "ORDER BY s.score DESC, s.feature LIMIT ?",
            [dictionary_id, OFFLINE_LLM, OFFLINE_LLM, top]).to_dicts()
        labels = run_labels.best_labels(store, dictionary_id, top)
        lookup = run_labels.lookup_labels(store, dictionary_id, [b["feature"] for b in best])
    return Summary(store.path, dictionary_id, *counts, best, labels, lookup, n_undefined=undefined)


def format_summary(summary: Summary, options: RunOptions) -> str:
    """The closing message: results, where they are, and the next commands to try."""
    lines = [
        "",
        f"Store: {summary.store.resolve()}",
        f"Dictionary {summary.dictionary_id}: {summary.n_features} features "
        f"({summary.n_alive} fired), {summary.n_explained} explained, {summary.n_scored} scored"
        + (f", {summary.n_failures} failures (see the failures table)" if summary.n_failures else "") + ".",
    ]
    from featurelens.jobs.run.labels import format_labels
    from featurelens.jobs.run.notes import no_ranking

    lines += format_labels(summary.labels)
    if summary.best:
        lines.append(f"Best-scored features ({options.scorer} score, {options.llm}):")
        for row in summary.best:
            lines.append(f"  #{row['feature']:<6} {row['score']:+.2f}  {row['text']}")
            if summary.lookup.get(row["feature"]):
                lines.append(f"          token lookup: {summary.lookup[row['feature']]}")
    elif not summary.labels:
        lines.append(no_ranking(summary, options.extract_tokens))
    store = f" --store {summary.store}" if summary.store.name != "featurelens.duckdb" else ""
    lines += [
        "",
        "Next:",
        f"  featurelens serve{store}                      browse features, examples and explanations",
        f"  OPENAI_API_KEY=... featurelens label --llm openai:gpt-4o-mini --dictionary {summary.dictionary_id}{store}",
        "                                                label with an API model (or anthropic:claude-haiku-4-5)",
        f"  featurelens run --label-features {max(options.label_features * 4, 50)}{store}"
        "      explain and score more features locally",
        f"  featurelens search \"closing brackets in code\"{store}        find features by what their labels mean",
        f"  featurelens sql \"SELECT * FROM scores ORDER BY score DESC LIMIT 20\"{store}",
    ]
    return "\n".join(lines)
