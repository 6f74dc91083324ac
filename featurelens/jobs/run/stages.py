"""The stages of ``featurelens run``, each a thin adapter over another area's public API.

Each stage decides from the store (or the run folder) whether its work is already
done, calls the area's function otherwise (which shows its own progress bar and
resumes its own partial work), and returns a one-line :class:`StageResult`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurelens.jobs.run.context import RunContext, Stage, StageResult
from featurelens.jobs.run.labels import stage_lookup, stage_offline_scores

#: explanations in flight in `run`: the local provider's default batch, decoded together
EXPLAIN_CONCURRENCY = 8


def _backend(ctx: RunContext) -> Any:
    """The model, loaded once and shared by training and extraction."""
    if "backend" not in ctx.values:
        from featurelens.core.host.manager import create

        ctx.values["backend"] = create("model_backend", "hf", ctx.options.model, dtype="float32", device="auto")
    return ctx.values["backend"]


def stage_model(ctx: RunContext) -> StageResult:
    """Make sure the model is on disk (the embedded GGUF is converted once, then cached)."""
    from featurelens.core.model.embedded import EMBEDDED_ALIASES, embedded_model_path

    if ctx.options.model in EMBEDDED_ALIASES:
        path = embedded_model_path()
        ctx.values["model_path"] = Path(path)
        return StageResult("model", "done", f"embedded SmolLM2-135M-Instruct at {path}")
    path = Path(ctx.options.model).expanduser()
    ctx.values["model_path"] = path
    return StageResult("model", "done", f"{path}")


def dictionary_dir(ctx: RunContext) -> Path:
    return ctx.workdir / "dictionaries" / ctx.options.dictionary_id


def stage_train(ctx: RunContext) -> StageResult:
    """Train a small TopK dictionary at the run's hookpoint (resumes; instant once trained)."""
    from featurelens.core.training import api as training

    target = dictionary_dir(ctx)
    o = ctx.options
    ctx.values["dictionary_path"] = target
    if (target / training.SUMMARY).is_file():
        # The folder name is the dictionary id, which hashes every option that shapes
        # training, so a finished folder is this run's dictionary: no need to re-verify it.
        return StageResult("train", "skipped", f"{o.dictionary_id} already trained at {target}")
    result = training.train_dictionary(
        backend=_backend(ctx), hookpoint=o.hookpoint, architecture="topk", expansion=o.expansion, k=o.k,
        corpus=o.corpus, tokens=o.train_tokens, context=o.context, output=target, seed=o.seed,
        split="train" if o.split == "heldout" else "all",
        buffer_rows=min(32_768, o.train_tokens),  # never read more activations than the budget
        dictionary_id=o.dictionary_id, progress=True)
    return StageResult("train", "done", f"{o.dictionary_id} at {target} ({_metrics(result)})")


def _metrics(result: Any) -> str:
    metrics = getattr(result, "metrics", None) or (result if isinstance(result, dict) else {})
    shown = [f"{k}={v:.3g}" for k, v in metrics.items() if isinstance(v, (int, float))][:4]
    return ", ".join(shown) or "trained"


def stage_extract(ctx: RunContext) -> StageResult:
    """Statistics and examples of every feature, written to the store (resumes itself)."""
    from featurelens.core.dictionaries.loading import load_dictionary
    from featurelens.core.extraction import ExtractSpec, extract

    o = ctx.options
    finished = ctx.store.execute(
        "SELECT count(*) FROM runs WHERE kind = 'extract' AND status = 'done' "
        "AND json_extract_string(config, '$.dictionary_id') = ? "
        "AND json_extract(config, '$.windows')::BIGINT * json_extract(config, '$.context')::BIGINT >= ?",
        [o.dictionary_id, o.extract_tokens])[0][0]
    if finished:  # checked here so a rerun does not load the dictionary or read the corpus
        ctx.values["dictionary_id"] = o.dictionary_id
        return StageResult("extract", "skipped", f"features of {o.dictionary_id} already in the store")
    backend = _backend(ctx)
    dictionary = load_dictionary(str(ctx.values["dictionary_path"]), backend=backend, hookpoint=o.hookpoint)
    dictionary.config.setdefault("dictionary_id", o.dictionary_id)
    # extract() opens the store itself; DuckDB shares one instance per file within a
    # process, so its writes and ours go to the same database.
    spec = ExtractSpec(hookpoint=o.hookpoint, model=o.model, corpus=o.corpus, tokens=o.extract_tokens,
                       context=o.context, top_k=20, n_quantile=20, n_random=20, seed=o.seed, split=o.split,
                       dictionary=str(ctx.values["dictionary_path"]))  # lazy logit effects reload it from there
    result = extract(spec, store=ctx.store.path, model_obj=backend, dictionary_obj=dictionary)
    ctx.values["dictionary_id"] = result.dictionary_id
    if result.already_done:
        return StageResult("extract", "skipped", f"features of {result.dictionary_id} already in the store")
    return StageResult("extract", "done", f"{result.n_tokens} tokens, {result.n_windows} windows")


def _selection(ctx: RunContext) -> dict[str, Any]:
    """The sample of features to label: ones that fired often enough to have examples."""
    return {"dictionary_id": ctx.values.get("dictionary_id", ctx.options.dictionary_id),
            "where": "fire_count >= 5", "limit": ctx.options.label_features}


def stage_explain(ctx: RunContext) -> StageResult:
    """Explain the sample with the local LLM; explained features are skipped on rerun."""
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings

    o = ctx.options
    if o.label_features == 0:
        return StageResult("explain", "skipped", "--label-features 0")
    spec = ExplainSpec(o.llm, o.explainer, **_selection(ctx))
    # Several in flight, so a local model decodes their answers together (local_decode.py).
    stats = explain_features(ctx.store, spec, settings=EngineSettings(concurrency=EXPLAIN_CONCURRENCY))
    status = "skipped" if stats.jobs == 0 and stats.skipped else "done"
    return StageResult("explain", status, f"{stats.succeeded} explained now, {stats.skipped} already, "
                                          f"{stats.failed} failed")


def stage_score(ctx: RunContext) -> StageResult:
    """Simulation-score those explanations with the local LLM; scored ones are skipped."""
    from featurelens.jobs.run.labels import score_offline
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import (
        ScoreSpec,
        count_explanations,
        score_features,
    )

    o = ctx.options
    if o.label_features == 0:
        return StageResult("score", "skipped", "--label-features 0")
    options = (("n_activating", o.score_windows), ("n_random", o.score_windows)) if o.scorer == "simulation" else ()
    spec = ScoreSpec(o.llm, o.scorer, scorer_options=options, explainer=o.explainer, explained_by=o.llm,
                     **_selection(ctx))
    if count_explanations(ctx.store, spec) == 0:
        return StageResult("score", "done", "no stored explanation of the sample to score (explain "
                                            "attempts that failed are in the failures table)")
    stats = score_features(ctx.store, spec, settings=EngineSettings(concurrency=1))
    status = "skipped" if stats.jobs == 0 and stats.skipped else "done"
    # The sample's labels also get the offline scores, to compare them with token lookup's.
    offline = score_offline(ctx, explained_by=o.llm)
    return StageResult("score", status, f"{stats.succeeded} scored now, {stats.skipped} already, "
                                        f"{stats.failed} failed" + "".join(f"; {line}" for line in offline))


def stage_embed(ctx: RunContext) -> StageResult:
    """Embed every explanation with the installed sentence model, so ``featurelens search``
    finds features by meaning at once (only explanations without a vector; resumable)."""
    from featurelens.core.errors import FeaturelensError
    from featurelens.core.store import explanation_search

    model = explanation_search.SEARCH_EMBEDDINGS.get(ctx.options.embeddings)
    if model is None:
        return StageResult("embed", "skipped", f"--embeddings {ctx.options.embeddings}: featurelens search embeds "
                                               "the explanations on its first query")
    try:
        path = explanation_search.model_path()
    except FeaturelensError as error:
        return StageResult("embed", "skipped", f"left out: {error}")
    if explanation_search.missing_count(ctx.store) == 0:
        return StageResult("embed", "skipped", "every explanation is embedded already")
    added = explanation_search.embed_missing(ctx.store, path=path)
    return StageResult("embed", "done", f"{added} explanations embedded with {model}; "
                                        "featurelens search \"...\" finds features by meaning")


def default_stages() -> list[tuple[str, Stage]]:
    return [("model", stage_model), ("train a TopK dictionary", stage_train),
            ("extract feature statistics and examples", stage_extract),
            ("label every feature that fired (token lookup, no LLM)", stage_lookup),
            ("score every label offline (token check, embedding)", stage_offline_scores),
            ("explain a sample of features with the LLM", stage_explain),
            ("score the sample (simulation with the LLM, and offline)", stage_score),
            ("embed explanations for search by meaning", stage_embed)]
