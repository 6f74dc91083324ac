"""An in-memory index for searching explanations, built once per ``serve`` session.

A store cannot change while the browser has it open (DuckDB lets no other process
write a file that a reader holds), so every explanation's best score can be joined
and sorted once, in a background thread, instead of on every search: a search is then
a substring filter over one pre-sorted lower-cased column (polars, vectorised), and
the first page of a common word stops early. Until the index is ready, searches run
the equivalent SQL directly.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import polars as pl

#: The search query, in SQL: what the index holds, and the fallback before it is ready.
INDEX_SQL = (
    "SELECT e.dictionary_id, e.feature, e.text, e.explainer, e.llm, max(s.score) AS score "
    "FROM explanations e LEFT JOIN scores s ON s.explanation_id = e.explanation_id AND s.status = 'ok' "
    "{where} GROUP BY ALL ORDER BY score DESC NULLS LAST, e.dictionary_id, e.feature"
)


def like_pattern(text: str) -> str:
    """``text`` as an ILIKE pattern that matches it literally anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SearchIndex:
    """Explanations sorted by best score, with a lower-cased column to filter."""

    def __init__(self) -> None:
        self._frame: pl.DataFrame | None = None
        self._ready = threading.Event()
        self.error: str | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def build(self, fetch: Callable[[str], Any]) -> None:
        """Fill the index from ``fetch(sql) -> Arrow table``; errors leave the SQL fallback."""
        try:
            frame = pl.from_arrow(fetch(INDEX_SQL.format(where="")))
            assert isinstance(frame, pl.DataFrame)
            self._frame = frame.with_columns(pl.col("text").str.to_lowercase().alias("_lower"))
        except Exception as error:  # noqa: BLE001 - the fallback keeps search working
            self.error = str(error)
            return
        self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def search(self, text: str, offset: int, limit: int, chunk: int = 65_536) -> list[dict[str, Any]]:
        """Rows ``offset .. offset + limit`` of the matches, best score first.

        The frame is scanned a chunk at a time and the scan stops once enough rows
        matched, so a common word's first page costs one chunk, not the whole index.
        """
        assert self._frame is not None
        frame = self._frame
        if not text:
            return frame.slice(offset, limit).drop("_lower").to_dicts()
        needle = text.lower()
        found: list[pl.DataFrame] = []
        have = 0
        for start in range(0, frame.height, chunk):
            part = frame.slice(start, chunk)
            hits = part.filter(pl.col("_lower").str.contains(needle, literal=True))
            found.append(hits)
            have += hits.height
            if have >= offset + limit:
                break
        if not found:
            return []
        return pl.concat(found).slice(offset, limit).drop("_lower").to_dicts()
