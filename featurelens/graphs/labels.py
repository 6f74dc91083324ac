"""Labels on a graph's feature nodes, from the store's explanations and scores.

Every feature node gets its feature's *best-scored* explanation (highest score across
scorers and LLMs; unscored explanations after scored ones, newest first) with that score
and ``explainer:llm`` as its source. Features with no explanation at all are labelled at
once by the ``token-lookup`` explainer (no LLM, thousands a second) through the usual
explain engine, so the labels are ordinary ``explanations`` rows that later runs reuse;
a feature with no stored examples (the set was never extracted) stays unlabelled, and
the count says so.

:func:`explain_graph_features` runs an LLM explainer and scorers on exactly the graph's
feature nodes (a ``--where`` condition that selects them from ``graph_nodes``) through
the same engine as ``featurelens label``; labels are then refreshed from the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from featurelens.core.errors import FeaturelensError
from featurelens.core.store.database import Store

LOOKUP = "token-lookup"

BEST_LABELS = """
WITH nodes AS (
    SELECT DISTINCT n.feature FROM graph_nodes n WHERE n.graph_id = $graph AND n.kind = 'feature'
), ranked AS (
    SELECT e.feature, e.text, e.explainer || ':' || e.llm AS source, s.best,
           row_number() OVER (PARTITION BY e.feature
                              ORDER BY s.best DESC NULLS LAST, e.created_at DESC, e.explanation_id) AS pick
    FROM explanations e
    JOIN nodes USING (feature)
    LEFT JOIN (SELECT explanation_id, max(score) AS best FROM scores
               WHERE status = 'ok' GROUP BY explanation_id) s USING (explanation_id)
    WHERE e.dictionary_id = $dictionary
)
SELECT feature, text, source, best FROM ranked WHERE pick = 1
"""


@dataclass
class LabelCounts:
    """How the graph's feature nodes were labelled."""

    features: int  #: distinct features among the nodes
    from_store: int  #: had an explanation before this call
    looked_up: int  #: labelled now by token lookup
    unlabelled: int  #: no explanation and no examples to look up

    def line(self) -> str:
        text = (f"labels: {self.features} features, {self.from_store} from the store, "
                f"{self.looked_up} by token lookup now")
        if self.unlabelled:
            text += (f", {self.unlabelled} without examples (extract the set to label them: "
                     "featurelens extract --dictionary SET)")
        return text


def graph_dictionary(store: Store, graph_id: str) -> str:
    rows = store.execute("SELECT dictionary_id FROM graphs WHERE graph_id = ?", [graph_id])
    if not rows:
        raise FeaturelensError(f"There is no graph {graph_id!r} in the store; build it with featurelens graph first.")
    return rows[0][0]


def graph_where(graph_id: str) -> str:
    """A ``features`` condition selecting the graph's feature nodes (for the explain engine)."""
    if not graph_id.replace("-", "").isalnum():
        raise FeaturelensError(f"{graph_id!r} is not a graph id.")
    return (f"feature IN (SELECT feature FROM graph_nodes WHERE graph_id = '{graph_id}' "
            "AND kind = 'feature')")


def _unexplained_with_examples(store: Store, graph_id: str, dictionary_id: str) -> tuple[int, int]:
    """(features with no explanation that have examples, those without examples)."""
    rows = store.execute(
        "SELECT count(*) FILTER (WHERE x.feature IS NOT NULL), count(*) FILTER (WHERE x.feature IS NULL) "
        "FROM (SELECT DISTINCT feature FROM graph_nodes WHERE graph_id = ? AND kind = 'feature') n "
        "LEFT JOIN (SELECT DISTINCT feature FROM explanations WHERE dictionary_id = ?) e USING (feature) "
        "LEFT JOIN (SELECT DISTINCT feature FROM examples WHERE dictionary_id = ? AND kind = 'top') x "
        "USING (feature) WHERE e.feature IS NULL", [graph_id, dictionary_id, dictionary_id])
    return int(rows[0][0]), int(rows[0][1])


def label_nodes(store: Store, graph_id: str, *, look_up: bool = True, show_progress: bool = False) -> LabelCounts:
    """Write each feature node's best label; token-lookup labels first for features with none."""
    dictionary_id = graph_dictionary(store, graph_id)
    total = store.execute("SELECT count(DISTINCT feature) FROM graph_nodes WHERE graph_id = ? AND kind = 'feature'",
                          [graph_id])[0][0]
    lookable, bare = _unexplained_with_examples(store, graph_id, dictionary_id)
    looked_up = 0
    if look_up and lookable:
        from featurelens.labelers.explain import ExplainSpec, explain_features
        from featurelens.llm.engine import EngineSettings

        spec = ExplainSpec("offline:none", LOOKUP, where=graph_where(graph_id), dictionary_id=dictionary_id)
        stats = explain_features(store, spec, settings=EngineSettings(concurrency=64, progress=show_progress))
        looked_up = int(stats.succeeded)
    store.execute("CREATE OR REPLACE TEMP TABLE _graph_labels AS " + BEST_LABELS,
                  {"graph": graph_id, "dictionary": dictionary_id})  # type: ignore[arg-type]
    with store.transaction():
        store.execute(
            "UPDATE graph_nodes SET label = l.text, label_score = l.best, label_source = l.source "
            "FROM _graph_labels l WHERE graph_nodes.graph_id = ? AND graph_nodes.kind = 'feature' "
            "AND graph_nodes.feature = l.feature", [graph_id])
    store.execute("DROP TABLE IF EXISTS _graph_labels")
    return LabelCounts(features=int(total), from_store=int(total) - lookable - bare, looked_up=looked_up,
                       unlabelled=bare + (lookable - looked_up))


def explain_graph_features(store: Store, graph_id: str, *, llm: str, explainer: str = "token-activations",
                           scorers: Sequence[str] = ("simulation",), score_llm: str | None = None,
                           provider: Any = None, settings: Any = None) -> list[str]:
    """Explain and score the graph's features with ``llm`` (the ``featurelens label`` engine);
    returns one summary line per stage. Resumes like ``label``: stored work is skipped."""
    from featurelens.labelers.explain import ExplainSpec, explain_features, make_explainer
    from featurelens.llm.offline import effective_llm
    from featurelens.scorers.score_jobs import ScoreSpec, count_explanations, score_features

    dictionary_id = graph_dictionary(store, graph_id)
    where = graph_where(graph_id)
    spec = ExplainSpec(llm, explainer, where=where, dictionary_id=dictionary_id)
    written_by = effective_llm(make_explainer(spec), llm)
    stats = explain_features(store, spec, provider=provider, settings=settings)
    lines = [f"explained: {stats.succeeded} now, {stats.skipped} already, {stats.failed} failed"]
    for name in scorers:
        score_spec = ScoreSpec(score_llm or llm, name, (), where, dictionary_id, None, explainer, written_by)
        if not count_explanations(store, score_spec):
            lines.append(f"scored ({name}): nothing to score")
            continue
        stats = score_features(store, score_spec, provider=provider if (score_llm or llm) == written_by else None,
                               settings=settings)
        lines.append(f"scored ({name}): {stats.succeeded} now, {stats.skipped} already, {stats.failed} failed")
    return lines
