"""``featurelens batches collect``: download provider batches and finish their runs.

The LLM layer downloads answers into the cache; finishing a run means writing
explanations or scores, which belongs to the explain and score jobs one floor up.
This module names the finisher of each run kind, so the LLM layer never imports them.
"""

from __future__ import annotations

from featurelens.core.store.database import Store
from featurelens.jobs import label_batches
from featurelens.labelers import explain
from featurelens.llm.batch import submit as batch_api
from featurelens.llm.pricing import PriceTable
from featurelens.scorers import score_jobs

#: Run kind (the ``runs.kind`` column) -> what writes its results from cached answers.
FINISHERS: dict[str, batch_api.Finisher] = {
    "explain": explain.finish_from_batches,
    "score": score_jobs.finish_from_batches,
    "label": label_batches.finish_label,
}


def collect_batches(store: Store, *, prices: PriceTable | None = None, progress: bool = True) -> list[str]:
    """Collect every finished batch and write the runs that were waiting on them."""
    return batch_api.collect(store, FINISHERS, prices=prices, progress=progress)
