"""An extracted store with three hand-written explanations, for the labeling tests on Ray."""

from __future__ import annotations

import shutil
from pathlib import Path


def seeded(expected: Path, path: Path) -> Path:
    """A copy of ``expected`` plus three explanations by explainer ``seed``, so scoring has
    work (a tiny random model's own explanations are unreadable: they land in failures)."""
    import duckdb

    shutil.copy(expected, path)
    with duckdb.connect(str(path)) as db:
        db.execute("INSERT INTO explanations (explanation_id, dictionary_id, feature, explainer, llm, text, "
                   "created_at) SELECT 'seed-' || feature, dictionary_id, feature, 'seed', 'seed:model', "
                   "'numbers and colons', now() FROM features ORDER BY feature LIMIT 3")
    return path
