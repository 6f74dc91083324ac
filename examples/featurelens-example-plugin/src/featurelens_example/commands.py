"""``featurelens example-label``: label one stored feature with the example's components.

It reads the store through featurelens' public API and resolves its components through
the registry by name, exactly as any other plugin's command would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

import featurelens
from featurelens.api import Example, FeatureRecord, FeaturelensError, create, store_option

_EXAMPLES = """
SELECT s.token_strs AS tokens, e.activations, e.kind, e.quantile
FROM examples e JOIN sequences s USING (corpus_id, sequence_id)
WHERE e.dictionary_id = ? AND e.feature = ?
ORDER BY e.kind, e.rank
"""


def load_record(store, dictionary: str, feature: int) -> FeatureRecord:
    """The feature's stored examples and statistics as a FeatureRecord."""
    rows = store.sql(_EXAMPLES, [dictionary, feature])
    if rows.is_empty():
        raise FeaturelensError(
            f"Feature {feature} of dictionary {dictionary!r} has no stored examples; "
            "check the ids with `featurelens sql \"SELECT DISTINCT dictionary_id FROM examples\"`."
        )
    stats = store.sql("SELECT max_activation, density FROM features "
                      "WHERE dictionary_id = ? AND feature = ?", [dictionary, feature])
    examples = [Example(list(r["tokens"]), [float(a) for a in r["activations"]], r["kind"],
                        r["quantile"]) for r in rows.iter_rows(named=True)]
    max_activation = stats["max_activation"][0] if stats.height else None
    return FeatureRecord(
        dictionary, feature,
        max_activation if max_activation is not None else max(e.max_activation for e in examples),
        stats["density"][0] if stats.height else 0.0,
        examples,
    )


@click.command("example-label")
@store_option
@click.option("--dictionary", required=True, help="dictionary_id of the feature.")
@click.option("--feature", required=True, type=int, help="Feature index.")
@click.option("--llm", default="example-echo:v1", show_default=True, help="provider:model.")
def example_label(store_path: Path | None, dictionary: str, feature: int, llm: str) -> None:
    """Label one stored feature with the example explainer and score it (read-only)."""
    with featurelens.open_store(store_path, read_only=True) as store:
        record = load_record(store, dictionary, feature)
    explainer = create("explainer", "example-keywords")
    scorer = create("scorer", "example-keyword-recall")
    provider = create("llm_provider", llm)

    async def answer(requests):
        return [await provider.complete(r) for r in requests]

    label = explainer.parse(record, asyncio.run(answer(explainer.requests(record))))
    result = scorer.score(record, label, asyncio.run(answer(scorer.requests(record, label, provider.capabilities))))
    shown = "undefined" if result.score is None else f"{result.score:.2f}"
    click.echo(f"feature {feature}: {label} (keyword recall {shown})")
