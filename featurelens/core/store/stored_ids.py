"""Which of a chunk's deterministic row ids the store holds already (what a rerun skips).

Explanations and scores carry ids that hash what made them, so a resumed or repeated job
asks, chunk by chunk, which of its ids are stored. One query answers it: the rows of the
chunk's feature range (narrowed by columns the ids are made from, such as the scorer)
whose id is among the chunk's, the ids passed as one list parameter and matched by a hash
semi-join. The range bounds what DuckDB reads; one parameter keeps the query's cost flat in
the chunk's size, where an ``IN`` list of one parameter an id is bound anew each chunk
(tens of milliseconds at 2,048 ids); and only the matches come back, however wide the range
of a sparse selection's chunk.
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
                         f"AND {int(max(features))}{conditions} "
                         f"AND {column} IN (SELECT unnest(?::VARCHAR[]))", [*(match or {}).values(), list(ids)])
    return {row[0] for row in rows}
