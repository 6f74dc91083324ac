"""``featurelens run``: the whole job on the embedded default, as one resumable command.

Stages, each a call into another area's public Python API:

1. model    - the embedded SmolLM2 (:func:`featurelens.plugins.embedded.embedded_model_path`)
2. train    - a small dictionary at one hookpoint, on the default corpus
3. extract  - statistics and examples of every feature into the store
4. explain  - a sample of features, with the local LLM
5. score    - simulation scoring of those explanations, with the local LLM

Every stage is idempotent against the store (and the run folder next to it): it
skips what is already there, and the stages it calls resume their own partial work,
so rerunning ``featurelens run`` after a kill continues instead of starting over.
The run ends with :func:`summary`: the best-scored features, where the store is, and
what to run next.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from featurelens.core.store import Store

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """The sizes of a run. Defaults finish in under 10 minutes on 2 CPU cores."""

    model: str = "smollm2"
    corpus: str = "stdlib"
    layer: int = 6
    context: int = 64
    expansion: int = 4
    k: int = 16
    train_tokens: int = 32_768
    extract_tokens: int = 16_384
    label_features: int = 6
    llm: str = "local:smollm2"
    explainer: str = "token-activations"
    scorer: str = "simulation"
    #: Activating (and as many random) windows the simulation scores per feature; the
    #: scorer's default of 50 + 50 suits an API model, not a local one on 2 cores.
    score_windows: int = 10
    seed: int = 0
    #: heldout: train on the corpus's training documents, extract on the held-out ones;
    #: all: both on every document (see featurelens.core.corpus_split).
    split: str = "heldout"

    @property
    def hookpoint(self) -> str:
        return f"blocks.{self.layer}.hook_resid_post"

    def fingerprint(self, *names: str) -> str:
        """A short hash of the named options: stages key their output on what shaped it."""
        chosen = {name: getattr(self, name) for name in names}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def dictionary_id(self) -> str:
        """Stable id of the dictionary this run trains (same options, same id: resumable)."""
        names = ["model", "corpus", "layer", "context", "expansion", "k", "train_tokens", "seed"]
        # The split shapes the training data; heldout ids also differ from those of runs
        # made before the split existed, whose dictionaries trained on every document.
        key = self.fingerprint(*names, "split")
        name = Path(self.model).name.lower() or "model"
        return f"{name}-l{self.layer}-topk{self.expansion}x-{key}"


@dataclass
class StageResult:
    name: str
    status: str  #: done, skipped (already in the store) or unavailable
    detail: str = ""
    seconds: float = 0.0


@dataclass
class RunContext:
    """What stages share: the open store, the options, the run folder, earlier results."""

    store: Store
    options: RunOptions
    workdir: Path
    echo: Echo
    values: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[RunContext], StageResult]


def workdir_for(store_path: Path) -> Path:
    """Files that do not belong in the store (the trained dictionary, checkpoints)."""
    return store_path.with_name(store_path.stem + ".run")


@dataclass
class RunReport:
    stages: list[StageResult]
    dictionary_id: str
    complete: bool


def run_pipeline(store_path: Path, options: RunOptions, stages: list[tuple[str, Stage]] | None = None,
                 echo: Echo = print) -> RunReport:
    """Run every stage in order; each prints a header, shows its own progress bar and resumes."""
    from featurelens.core import pipeline_stages

    chosen = stages if stages is not None else pipeline_stages.default_stages()
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


def summarize(store_path: Path, dictionary_id: str, top: int = 5) -> Summary:
    """Counts and the best-scored features of ``dictionary_id``, read-only."""
    with Store.open(store_path, read_only=True) as store:
        counts = store.execute(
            "SELECT (SELECT count(*) FROM features WHERE dictionary_id = ?), "
            "(SELECT count(*) FROM features WHERE dictionary_id = ? AND fire_count > 0), "
            "(SELECT count(DISTINCT feature) FROM explanations WHERE dictionary_id = ?), "
            "(SELECT count(*) FROM scores WHERE dictionary_id = ? AND status = 'ok'), "
            "(SELECT count(*) FROM failures WHERE dictionary_id = ?)", [dictionary_id] * 5)[0]
        best = store.sql(
            "SELECT s.feature, s.score, s.scorer, e.text, f.density FROM scores s "
            "JOIN explanations e USING (explanation_id) "
            "JOIN features f ON f.dictionary_id = s.dictionary_id AND f.feature = s.feature "
            "WHERE s.dictionary_id = ? AND s.status = 'ok' ORDER BY s.score DESC, s.feature LIMIT ?",
            [dictionary_id, top]).to_dicts()
    return Summary(store_path, dictionary_id, *counts, best)


def format_summary(summary: Summary, options: RunOptions) -> str:
    """The closing message: results, where they are, and the next commands to try."""
    lines = [
        "",
        f"Store: {summary.store.resolve()}",
        f"Dictionary {summary.dictionary_id}: {summary.n_features} features "
        f"({summary.n_alive} fired), {summary.n_explained} explained, {summary.n_scored} scored"
        + (f", {summary.n_failures} failures (see the failures table)" if summary.n_failures else "") + ".",
    ]
    if summary.best:
        lines.append(f"Best-scored features ({options.scorer} score, {options.llm}):")
        for row in summary.best:
            lines.append(f"  #{row['feature']:<6} {row['score']:+.2f}  {row['text']}")
    else:
        lines.append("No feature has a score yet.")
    store = f" --store {summary.store}" if summary.store.name != "featurelens.duckdb" else ""
    lines += [
        "",
        "Next:",
        f"  featurelens serve{store}                      browse features, examples and explanations",
        f"  OPENAI_API_KEY=... featurelens label --llm openai:gpt-4o-mini --dictionary {summary.dictionary_id}{store}",
        "                                                label with an API model (or anthropic:claude-haiku-4-5)",
        f"  featurelens run --label-features {max(options.label_features * 4, 50)}{store}"
        "      explain and score more features locally",
        f"  featurelens sql \"SELECT * FROM scores ORDER BY score DESC LIMIT 20\"{store}",
    ]
    return "\n".join(lines)
