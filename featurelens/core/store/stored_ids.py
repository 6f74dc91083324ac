"""Which of a chunk's deterministic row ids the store holds already (what a rerun skips).

Explanations and scores carry ids that hash what made them, so a resumed or repeated job
asks, chunk by chunk, which of its ids are stored. The question is one read of the id
column over the chunk's feature range, narrowed by the columns the ids hash (the scorer,
the LLM), answered against the ids in Python: the range bounds what DuckDB reads, and a
query of fixed shape costs the same for a chunk of 2,048 ids as for 8, where an ``IN``
list of one parameter an id is bound anew each chunk (tens of milliseconds at 2,048).
"""

from __future__ import annotations

from typing import Any

from featurelens.core.store.database import Store


def stored_ids(store: Store, table: str, column: str, ids: list[str], features: list[int],
               match: dict[str, Any] | None = None) -> set[str]:
    """The ``ids`` that ``table`` holds in ``column``, among its rows of ``features``' range
    whose ``match`` columns equal the given values (columns the ids are made from, so no
    other row could hold one of them)."""
    if not ids:
        return set()
    conditions = "".join(f" AND {name} = ?" for name in (match or {}))
    rows = store.execute(f"SELECT {column} FROM {table} WHERE feature BETWEEN {int(min(features))} "
                         f"AND {int(max(features))}{conditions}", list((match or {}).values()))
    wanted = set(ids)
    return {row[0] for row in rows if row[0] in wanted}
