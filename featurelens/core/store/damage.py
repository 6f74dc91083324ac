"""Telling a damaged store file apart from a bug, without importing DuckDB.

A store cut short (a copy that stopped, a disk that filled while it was written) opens
fine when its header is intact, and DuckDB only finds the missing blocks when a query
reaches them, deep inside a job. Its ``IOException`` ("Could not read enough bytes") or
checksum error is then not a featurelens bug but a file to restore: one sentence says
so, at open time (:mod:`featurelens.core.store.database`) and wherever a command meets it
(:mod:`featurelens.cli`).
"""

from __future__ import annotations

_SIGNS = ("could not read enough bytes", "corrupt database file", "checksum", "invalid block")


def is_damaged_store(error: BaseException) -> bool:
    """True when ``error`` is DuckDB reporting a file that is cut short or corrupt."""
    module = type(error).__module__.split(".")[0].lstrip("_")
    return module == "duckdb" and any(sign in str(error).lower() for sign in _SIGNS)


def damaged_sentence(path: object, error: BaseException) -> str:
    """One sentence for a damaged store file."""
    detail = " ".join(str(error).split())[:300]
    where = f"The store {path}" if path else "The store"
    return (f"{where} is damaged and cannot be read ({detail}); restore it from a backup, "
            "or point --store at another file.")
