"""``featurelens run``'s labels without an LLM: every feature that fired, scored offline.

Two stages and a summary section:

- :func:`stage_lookup` labels every feature that fired with the ``token-lookup``
  explainer (no model; thousands of features a second);
- :func:`stage_offline_scores` scores the labels of the dictionary (token lookup's and
  the LLM sample's alike) with the scorers that need no LLM: ``token-check`` every one,
  ``embedding`` (when its MiniLM package is installed) those of a first sample of
  features, since it costs about a second a feature on 2 cores;
- :func:`best_labels` / :func:`format_labels` pick the best-scored token-lookup labels
  and show each with a top example, the firing token marked ``«»``, so a reader can
  check the label against the evidence.

Both stages resume like every other (deterministic ids, stored work skipped).
"""

from __future__ import annotations

from typing import Any

from featurelens.core.never_fired import FIRED  # the features token lookup labels: every one that fired
from featurelens.core.store.database import Store
from featurelens.jobs.run.context import RunContext, StageResult
from featurelens.llm.window_text import neutralise

LOOKUP = "token-lookup"


def _dictionary(ctx: RunContext) -> str:
    return ctx.values.get("dictionary_id", ctx.options.dictionary_id)


def stage_lookup(ctx: RunContext) -> StageResult:
    """Label every feature that fired from its top windows, without an LLM."""
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings

    fired = ctx.store.execute(f"SELECT count(*) FROM features WHERE dictionary_id = ? AND {FIRED}",
                              [_dictionary(ctx)])[0][0]
    if not fired:
        from featurelens.jobs.run.notes import nothing_fired

        return StageResult("label", "done", nothing_fired(ctx.options.extract_tokens))
    spec = ExplainSpec("offline:none", LOOKUP, where=FIRED, dictionary_id=_dictionary(ctx))
    stats = explain_features(ctx.store, spec, settings=EngineSettings(concurrency=64))
    status = "skipped" if stats.jobs == 0 and stats.skipped else "done"
    detail = f"{stats.succeeded} labeled now, {stats.skipped} already, {stats.failed} failed"
    never = ctx.store.execute(f"SELECT count(*) FROM features WHERE dictionary_id = ? AND NOT ({FIRED})",
                              [_dictionary(ctx)])[0][0]
    if never:
        detail += f", {never:,} never fired: skipped"
    if stats.succeeded and stats.elapsed_s > 0:
        detail += f" ({stats.succeeded / stats.elapsed_s:.0f} features/s)"
    return StageResult("label", status, detail)


def offline_scorers() -> tuple[list[str], str]:
    """The offline scorers available here, and a note on any left out (and how to add it)."""
    from featurelens.core.errors import FeaturelensError
    from featurelens.scorers.embedding import default_model_path

    try:
        default_model_path()
    except FeaturelensError as error:
        return ["token-check"], f"; embedding left out: {error}"
    return ["token-check", "embedding"], ""


def score_offline(ctx: RunContext, explained_by: str | None = None) -> list[str]:
    """Score the dictionary's explanations (or those written by ``explained_by``) offline;
    one ``name: counts`` line per scorer.

    ``token-check`` is cheap and scores every label. ``embedding`` runs MiniLM over every
    test window (about a second a feature on 2 busy cores), so it scores the first
    ``embedding_features`` features that fired at least 5 times (at least the LLM sample,
    so there both explainers' labels get both scores); 0 leaves it out.
    """
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import (
        ScoreSpec,
        count_explanations,
        score_features,
    )

    o = ctx.options
    names, note = offline_scorers()
    if not o.embedding_features and "embedding" in names:  # --embedding-features 0: left out
        names.remove("embedding")
    plans = {"token-check": (FIRED, None, o.offline_windows),
             "embedding": ("fire_count >= 5", max(o.embedding_features, o.label_features), o.embedding_windows)}
    done = []
    for name in names:
        where, limit, windows = plans[name]
        spec = ScoreSpec("offline:none", name, (("n_activating", windows), ("n_random", windows)),
                         where=where, dictionary_id=_dictionary(ctx), limit=limit, explained_by=explained_by)
        if count_explanations(ctx.store, spec) == 0:
            continue
        stats = score_features(ctx.store, spec, settings=EngineSettings(concurrency=64))
        done.append(f"{name}: {stats.succeeded} now, {stats.skipped} already, {stats.failed} failed")
    return done + ([note.lstrip("; ")] if note else [])


def stage_offline_scores(ctx: RunContext) -> StageResult:
    """Score every stored label with the scorers that need no LLM."""
    lines = score_offline(ctx)
    fresh = any(": 0 now," not in line for line in lines if " now, " in line)
    return StageResult("score offline", "done" if fresh else "skipped", "; ".join(lines) or "nothing to score")


def best_labels(store: Store, dictionary_id: str, top: int = 5) -> list[dict[str, Any]]:
    """The best token-lookup labels: highest token-check score, then embedding AUROC,
    then the most frequent feature; each with its top example as marked text."""
    rows = store.sql(
        "SELECT e.feature, e.text, c.score AS check_score, m.score AS embedding_score, f.fire_count "
        "FROM explanations e JOIN features f USING (dictionary_id, feature) "
        "JOIN scores c ON c.explanation_id = e.explanation_id AND c.scorer = 'token-check' AND c.status = 'ok' "
        "LEFT JOIN scores m ON m.explanation_id = e.explanation_id AND m.scorer = 'embedding' "
        "     AND m.status = 'ok' "
        "WHERE e.dictionary_id = ? AND e.explainer = ? "
        "ORDER BY c.score DESC, m.score DESC NULLS LAST, f.fire_count DESC, e.feature LIMIT ?",
        [dictionary_id, LOOKUP, top]).to_dicts()
    for row in rows:
        row["example"] = top_example(store, dictionary_id, row["feature"])
    return rows


def top_example(store: Store, dictionary_id: str, feature: int, before: int = 8, after: int = 3) -> str:
    """The feature's strongest window around its peak, the peak token marked ``«»``."""
    found = store.execute(
        "SELECT s.token_strs, e.max_position FROM examples e JOIN sequences s USING (corpus_id, sequence_id) "
        "WHERE e.dictionary_id = ? AND e.feature = ? AND e.kind = 'top' ORDER BY e.rank LIMIT 1",
        [dictionary_id, feature])
    if not found:
        return ""
    tokens, peak = found[0]
    start = max(0, peak - before)
    shown = [neutralise(t) for t in tokens[start:peak + after + 1]]
    shown[peak - start] = f"«{shown[peak - start]}»"
    return ("…" if start else "") + "".join(shown) + ("…" if peak + after + 1 < len(tokens) else "")


def lookup_labels(store: Store, dictionary_id: str, features: list[int]) -> dict[int, str]:
    """The token-lookup label of each of ``features`` (to show beside an LLM's)."""
    if not features:
        return {}
    rows = store.execute(
        "SELECT feature, text FROM explanations WHERE dictionary_id = ? AND explainer = ? "
        "AND list_contains(?, feature)", [dictionary_id, LOOKUP, sorted(set(features))])
    return {int(f): t for f, t in rows}


def format_labels(rows: list[dict[str, Any]]) -> list[str]:
    """The summary's section on token-lookup labels."""
    if not rows:
        return []
    lines = ["Best token-lookup labels (no LLM; check = balanced accuracy of the label's tokens on "
             "held-out windows, emb = embedding AUROC; 0.5 is chance):"]
    for row in rows:
        emb = f"{row['embedding_score']:.2f}" if row.get("embedding_score") is not None else "  - "
        lines.append(f"  #{row['feature']:<6} check {row['check_score']:.2f}  emb {emb}  {row['text']}")
        if row.get("example"):
            lines.append(f"          top example: {row['example']}")
    return lines
