"""The DuckDB feature store: one file, a migrated schema, bulk transactional writes.

Writers hold the file exclusively (DuckDB's rule); readers open it read-only and can
share it with other readers. Every write of results goes through :meth:`Store.insert`
inside :meth:`Store.transaction`, so an interrupted job leaves the store as it was
before the shard it was writing.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import duckdb
import polars as pl
import pyarrow as pa

import featurelens
from featurelens.core.errors import StoreError
from featurelens.core.redaction import redact_columns
from featurelens.core.store.damage import damaged_sentence, is_damaged_store
from featurelens.core.store.disk_full import disk_full_sentence, is_disk_full
from featurelens.core.store.location import DEFAULT_STORE, ENV_STORE, default_store_path
from featurelens.core.store.turns import (
    ENV_LOCK_WAIT,
    HANDOVER_S,
    lock_wait_seconds,
    retry_while_locked,
    waited_since,
)

__all__ = ["DEFAULT_STORE", "ENV_STORE", "Store", "default_store_path", "migrations"]

_LOCK = re.compile(r"Conflicting lock is held in (?P<proc>.*?) \(PID (?P<pid>\d+)\)")


def migrations() -> list[tuple[str, str]]:
    """Every known migration as ``(name, sql)``, in the order they apply."""
    folder = resources.files("featurelens.core.store") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def is_lock_conflict(error: BaseException) -> bool:
    """True when DuckDB refused a file because another process holds it."""
    return isinstance(error, duckdb.IOException) and bool(_LOCK.search(str(error)))


def _connect(path: Path, read_only: bool, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """Open the file, turning DuckDB's lock and format errors into one clear sentence.

    While another process holds the file, keep asking it for a turn for ``wait_s``
    seconds (see :mod:`featurelens.core.store.turns`) before reporting it as in use."""
    try:
        return retry_while_locked(path, lambda: duckdb.connect(str(path), read_only=read_only),
                                  is_lock_conflict, wait_s)
    except duckdb.IOException as error:
        match = _LOCK.search(str(error))
        if match:
            raise StoreError(
                f"The store {path} is in use by process {match['pid']} ({match['proc']}), which did "
                f"not give it up within {wait_s:g} s; wait for it to finish or stop it, then try "
                f"again (labeling jobs and serve take turns; set {ENV_LOCK_WAIT} to wait longer)."
            ) from None
        if is_damaged_store(error):
            raise StoreError(damaged_sentence(path, error)) from None
        if "not a valid DuckDB database" not in str(error):
            raise StoreError(f"Cannot open the store {path} ({_one_line(error)}); check the "
                             "path and its permissions.") from None
        raise StoreError(
            f"{path} is not a DuckDB database, so not a featurelens store; point --store at "
            "a .duckdb file written by featurelens, or at a new path."
        ) from None
    except duckdb.ConnectionException:
        raise StoreError(
            f"The store {path} is already open in this process in "
            f"{'write' if read_only else 'read-only'} mode; close that Store before opening "
            f"it {'read-only' if read_only else 'for writing'}."
        ) from None
    except duckdb.Error as error:
        raise StoreError(
            f"{path} is not a featurelens store DuckDB can open ({_one_line(error)}); "
            "point --store at a .duckdb file written by featurelens, or at a new path."
        ) from None


class Store:
    """An open feature store. Use :func:`featurelens.open_store` to get one."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self._con: duckdb.DuckDBPyConnection | None = con
        self.path = path
        self.read_only = read_only
        self._depth = 0
        self._opened_at = time.time()
        self._released_at: float | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, reopened if :meth:`give_turn` closed it."""
        if self._con is None:
            if self._released_at is not None:  # let the process we gave the file to get in
                time.sleep(max(0.0, self._released_at + HANDOVER_S - time.time()))
            self._con = _connect(self.path, self.read_only, wait_s=max(lock_wait_seconds(), 60.0))
            self._opened_at = time.time()
        return self._con

    def give_turn(self) -> bool:
        """Close the file if another process has asked for it since this one opened it,
        so a browser can read while a job writes; the next use reopens it. Only between
        transactions. Returns whether the file was given away."""
        if self._con is None or self._depth or not waited_since(self.path, self._opened_at):
            return False
        self._con.close()
        self._con = None
        self._released_at = time.time()
        return True

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, read_only: bool = False) -> "Store":
        """Open the store at ``path``, creating and migrating it unless ``read_only``."""
        resolved = Path(path) if path is not None else default_store_path()
        if read_only and not resolved.exists():
            raise StoreError(
                f"There is no feature store at {resolved}; run a featurelens job first "
                f"(featurelens run) or point --store / {ENV_STORE} at an existing one."
            )
        if not read_only and resolved.parent and not resolved.parent.exists():
            raise StoreError(
                f"The folder {resolved.parent} for the store does not exist; create it or "
                "choose another --store path."
            )
        store = cls(_connect(resolved, read_only, wait_s=lock_wait_seconds()), resolved, read_only)
        try:
            store._check_and_migrate()
        except duckdb.Error as error:  # a file cut short or damaged past its header
            store.close()
            if is_disk_full(error):
                raise StoreError(disk_full_sentence(resolved)) from None
            raise StoreError(damaged_sentence(resolved, error)) from None
        except BaseException:
            store.close()
            raise
        return store

    def _applied(self) -> list[str]:
        exists = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations'"
        ).fetchone()[0]
        if not exists:
            return []
        return [row[0] for row in self.con.execute("SELECT name FROM schema_migrations").fetchall()]

    def _check_and_migrate(self) -> None:
        known = migrations()
        known_names = {name for name, _ in known}
        applied = self._applied()
        unknown = sorted(set(applied) - known_names)
        if unknown:
            raise StoreError(
                f"The store {self.path} was written by a newer featurelens (it has migration "
                f"{unknown[-1]!r}, unknown to featurelens {featurelens.__version__}); "
                "upgrade featurelens to read it."
            )
        pending = [(name, sql) for name, sql in known if name not in applied]
        if not pending:
            return
        if self.read_only:
            raise StoreError(
                f"The store {self.path} needs migration {pending[0][0]!r} before it can be "
                "read; open it once for writing (any featurelens job, or sql --write)."
            )
        with self.transaction():
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp, "
                "featurelens_version VARCHAR NOT NULL)"
            )
            for name, sql in pending:
                try:
                    self.con.execute(sql)
                except duckdb.Error as error:
                    raise StoreError(
                        f"Migration {name} failed on the store {self.path} ({_one_line(error)}); "
                        "the store is unchanged. Its schema_migrations table disagrees with its "
                        "tables: restore a backup or start a new store."
                    ) from None
                self.con.execute(
                    "INSERT INTO schema_migrations (name, featurelens_version) VALUES (?, ?)",
                    [name, featurelens.__version__],
                )

    def close(self) -> None:
        """Close the connection (and release the file lock)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------
    def sql(self, query: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run ``query`` and return the result as a polars DataFrame.

        Statements without a result (``CREATE``, ``INSERT``) return an empty frame. A
        failing query raises :class:`StoreError` with DuckDB's message on one line.
        """
        try:
            relation = self.con.sql(query, params=params)
            result = _to_arrow(relation) if relation is not None else None
        except duckdb.Error as error:
            raise StoreError(_query_error(error, self.read_only, self.path)) from None
        if result is None:
            return pl.DataFrame()
        frame = pl.from_arrow(result)
        return frame if isinstance(frame, pl.DataFrame) else frame.to_frame()

    def execute(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a statement and return its rows (small results: counts, ids)."""
        try:
            cursor = self.con.execute(query, params or [])
            return cursor.fetchall() if cursor.description else []
        except duckdb.Error as error:
            raise StoreError(_query_error(error, self.read_only, self.path)) from None

    # -- writing -----------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """All writes inside commit together or not at all; nesting joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self.con.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as error:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # DuckDB already ended the failed transaction
            if is_disk_full(error):
                raise StoreError(disk_full_sentence(self.path)) from None
            raise StoreError(f"Saving to the store {self.path} failed ({_one_line(error)}); "
                             "nothing of this step was saved, run the same command again.") from None

    def insert(
        self,
        table: str,
        rows: pl.DataFrame | pa.Table,
        *,
        on_conflict: str = "error",
    ) -> int:
        """Bulk-insert ``rows`` (matched to columns by name) into ``table``.

        ``on_conflict`` is ``"error"``, ``"ignore"`` (keep existing rows: resume-safe
        writes) or ``"replace"``. Returns the number of rows given.
        """
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", table):
            raise StoreError(f"{table!r} is not a table name.")
        arrow = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
        if arrow.num_rows == 0:
            return 0
        arrow = redact_columns(table, arrow)  # provider text may echo a key: never store it
        verbs = {"error": "INSERT", "ignore": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE"}
        if on_conflict not in verbs:
            raise StoreError(f"on_conflict={on_conflict!r} is not one of {', '.join(verbs)}.")
        verb = verbs[on_conflict]
        view = f"_incoming_{table}"
        self.con.register(view, arrow)
        try:
            with self.transaction():
                self.con.execute(f"{verb} INTO {table} BY NAME SELECT * FROM {view}")
        except duckdb.Error as error:
            if is_disk_full(error):
                raise StoreError(disk_full_sentence(self.path)) from None
            raise StoreError(f"Writing {arrow.num_rows} rows to {table} failed: {_one_line(error)}") from None
        finally:
            self._unregister(view)
        return arrow.num_rows

    def _unregister(self, view: str) -> None:
        """Drop a registered Arrow view; inside an aborted outer transaction DuckDB refuses
        even that, and the view dies with the rollback the caller is about to do."""
        try:
            self.con.unregister(view)
        except duckdb.Error:
            pass

    def tables(self) -> list[str]:
        """Names of the store's tables."""
        return [r[0] for r in self.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1")]


def _to_arrow(source: Any) -> pa.Table:
    """A result as an Arrow table (DuckDB 2 renamed ``fetch_arrow_table``)."""
    fetch = getattr(source, "to_arrow_table", None) or source.fetch_arrow_table
    return fetch()


def _query_error(error: BaseException, read_only: bool, path: Path | None = None) -> str:
    """DuckDB's complaint about a query as one sentence that says what to do."""
    text = _one_line(error)
    if is_disk_full(text):
        return disk_full_sentence(path) if path is not None else (
            "The disk is full (or a file-size or quota limit was reached), so nothing was saved; "
            "free some space and run the same command again.")
    if is_damaged_store(error):
        return damaged_sentence(path, error)
    if read_only and "read-only mode" in text:
        return ("This statement changes the store, which is opened read-only; "
                "pass --write (Python: open_store(path)) to allow writes.")
    return f"The query failed: {text.rstrip('.')}. Fix the SQL and run it again."


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) < 400 else text[:397] + "..."
