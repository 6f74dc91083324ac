"""Telling a full disk apart from a bad query.

DuckDB reports a failed write at ``COMMIT`` as a ``TransactionException`` whose text
ends in the operating system's words ("No space left on device", "File too large",
"Disk quota exceeded"). The store itself stays as it was (DuckDB rolls the transaction
back), so the useful sentence is where space ran out and what to do, not "fix the SQL".
"""

from __future__ import annotations

from pathlib import Path

_SIGNS = ("no space left on device", "disk quota exceeded", "file too large", "disk is full")


def is_disk_full(error: BaseException | str) -> bool:
    """True when ``error`` says a write failed for lack of space (or a file-size limit)."""
    text = str(error).lower()
    return any(sign in text for sign in _SIGNS)


def disk_full_sentence(path: Path | str) -> str:
    """One sentence for a write that failed because the store's disk is full."""
    return (f"The disk holding the store {path} is full (or a file-size or quota limit was reached), "
            "so this step was not saved; the store is as it was before it. Free some space "
            f"(df -h {Path(path).parent}) and run the same command again.")
