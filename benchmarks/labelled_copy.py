"""A working copy of a store whose last fired features carry token-lookup labels: what the
sentence-model benchmarks (embedding_scorer.py, embedding_limit.py) measure on.

The store is copied into a temporary folder (never written). The copy keeps only the
slice's explanations and no explanation vectors, so the explanation-search fill embeds the
slice's labels; the slice's embedding scores are dropped, so the scorer has them to do; and
features of the slice without token-lookup labels get them, outside any timing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import featurelens
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.llm.engine import EngineSettings


@contextmanager
def labelled_copy(source: Path, last: int | None, keep: Path | None = None
                  ) -> Iterator[tuple[Any, str, dict[tuple[str, int], str]]]:
    """``(store, where, labels)``: the open copy, the SQL condition of the slice (the last
    ``last`` fired features, or all), and each labelled feature's token-lookup label.
    ``keep``: where the copy goes once closed, when the block ends without an error."""
    settings = EngineSettings(concurrency=64, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.duckdb"
        shutil.copy(source, path)
        with featurelens.open_store(path) as store:
            first = 0
            if last:
                first = store.execute(f"SELECT min(feature) FROM (SELECT feature FROM features WHERE fire_count > 0 "
                                      f"ORDER BY feature DESC LIMIT {int(last)})")[0][0]
            where = f"feature >= {first}"
            store.execute(f"DELETE FROM scores WHERE scorer = 'embedding' AND {where}")
            store.execute(f"DELETE FROM explanations WHERE NOT ({where})")
            store.execute("DELETE FROM explanation_embeddings")
            if not store.execute(f"SELECT count(*) FROM explanations WHERE explainer = 'token-lookup' AND {where}")[0][0]:
                explain_features(store, ExplainSpec("offline:none", "token-lookup", where=where), settings=settings)
            labels = dict(((d, f), t) for d, f, t in store.execute(
                f"SELECT dictionary_id, feature, min(text) FROM explanations WHERE explainer = 'token-lookup' "
                f"AND {where} GROUP BY ALL"))
            yield store, where, labels
        if keep is not None:
            shutil.copy(path, keep)
