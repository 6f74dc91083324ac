"""Read-only queries behind the browser pages and the exports.

The connection is opened read-only with file-system access switched off and the
configuration locked, so the SQL box can read the store's tables and nothing else:
no writes, no ``COPY TO``, no ``read_csv('/etc/...')``, no ``ATTACH``. Every list is
paginated (``LIMIT`` one more row than shown, to know whether a next page exists),
and every per-feature lookup filters on ``(dictionary_id, feature)``, which the
stores' write order keeps clustered, so pages stay fast on a million features.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Container, Iterator

import duckdb

from featurelens.browser.feature_list import (
    ListRequest,
    attach_scores,
    list_features,
    scorers_of,
)
from featurelens.browser.search_index import INDEX_SQL, SearchIndex, like_pattern
from featurelens.browser.special_tokens import special_tokens_of
from featurelens.core.errors import FeaturelensError, StoreError
from featurelens.core.lazy_logits import PENDING
from featurelens.core.redaction import configured_secrets, redact
from featurelens.core.selection import Selection
from featurelens.core.store.database import Store, is_lock_conflict
from featurelens.core.store.turns import HANDOVER_S, retry_while_locked, waited_since

#: Rows the SQL box shows at most; the rest is reported as cut off.
SQL_ROW_LIMIT = 500
#: Characters of one SQL-box cell shown (cut inside DuckDB, before the value is fetched).
SQL_CELL_CHARS = 2000
#: Columns of a SQL-box result shown.
SQL_COLUMNS = 100
#: Characters of cells one SQL-box page holds at most (about as many bytes of page).
SQL_RESULT_CHARS = 2_000_000
#: Random (non-activating) windows shown per feature: they only show what the feature ignores.
RANDOM_SHOWN = 5
#: Seconds a SQL-box query may run before it is interrupted.
SQL_TIMEOUT_S = 10.0
#: Seconds a page waits for a job writing the store to give the browser a turn.
BROWSER_WAIT_S = 15.0
#: How often an idle browser checks whether a job is waiting for the file.
IDLE_CHECK_S = 0.05


@dataclass
class Page:
    """One page of a listing: rows (dicts) and whether more follow."""

    rows: list[dict[str, Any]]
    page: int
    has_next: bool


@dataclass
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


@dataclass
class FeatureData:
    """Everything a feature page shows."""

    stats: dict[str, Any]
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    explanations: list[dict[str, Any]] = field(default_factory=list)
    dictionary: dict[str, Any] = field(default_factory=dict)
    #: Tokens hidden in examples unless asked (see browser.special_tokens).
    special_tokens: Container[str] = field(default_factory=frozenset)
    effects: dict[str, Any] | None = None  #: feature_effects row (featurelens effects)
    #: The lazy extraction's marker (where its effects come from) when this feature's logit
    #: effects are left to compute: the page says how to fill them.
    logits_pending: dict[str, Any] | None = None
    #: Its effects were computed for this page by ``serve --model`` and are not stored.
    logits_unstored: bool = False


_DICTIONARIES_SQL = (
    "SELECT d.dictionary_id, d.model_id, d.hookpoint, d.architecture, d.d_sae, "
    "coalesce(f.n, 0) AS n_features, coalesce(e.n, 0) AS n_explained "
    "FROM dictionaries d "
    "LEFT JOIN (SELECT dictionary_id, count(*) AS n FROM features GROUP BY 1) f USING (dictionary_id) "
    "LEFT JOIN (SELECT dictionary_id, count(DISTINCT feature) AS n FROM explanations GROUP BY 1) e "
    "USING (dictionary_id) ORDER BY d.dictionary_id"
)


#: The rows of a batch of features: a range the store's order keeps together, then the exact set.
_BATCH_WHERE = "dictionary_id = ? AND feature BETWEEN ? AND ? AND list_contains(?, feature)"


def _fingerprint(path: Path) -> tuple[int, ...]:
    """Size and modification time of the store and its WAL: changes when a job wrote."""
    out: list[int] = []
    for file in (path, path.with_name(path.name + ".wal")):
        try:
            stat = file.stat()
            out += [stat.st_size, stat.st_mtime_ns]
        except OSError:
            out += [-1, -1]
    return tuple(out)


def _arrow(result: Any) -> Any:
    """A DuckDB result as an Arrow table (the method was renamed in DuckDB 2)."""
    fetch = getattr(result, "to_arrow_table", None)
    return fetch() if fetch is not None else result.fetch_arrow_table()


_KEPT_TYPES = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
               "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "DATE")


def _bounded(relation: Any, columns: int) -> Any:
    """``relation``'s first ``columns`` columns, each cell that is not a number shown as
    text cut to :data:`SQL_CELL_CHARS` characters (plus one, so a cut cell is longer)."""
    parts = []
    for position, (name, kind) in enumerate(list(zip(relation.columns, relation.types))[:columns], 1):
        quoted = '"' + name.replace('"', '""') + '"'  # by position: names may repeat
        if str(kind).split("(")[0] in _KEPT_TYPES:
            parts.append(f"#{position} AS {quoted}")
        else:
            parts.append(f"left(CAST(#{position} AS VARCHAR), {SQL_CELL_CHARS + 1}) AS {quoted}")
    return relation.project(", ".join(parts))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) < 300 else text[:297] + "..."


class BrowserData:
    """A read-only view of one store, safe to share between request threads.

    The file is not held for the life of the server: it is opened for a page (or a
    batch of pages) and given up as soon as a job asks for it (see
    :mod:`featurelens.core.store.turns`), so ``serve`` can watch ``explain`` write.
    Cached listings and the search index are rebuilt when the file changed meanwhile.
    """

    def __init__(self, path: str | Path | None, wait_s: float = BROWSER_WAIT_S):
        store = Store.open(path, read_only=True)  # clear errors: missing, locked, needs migration
        self.path = store.path
        store.close()
        self.wait_s = wait_s
        self._lock = threading.RLock()  # guards the connection and the user count
        self._cond = threading.Condition(self._lock)
        self._local = threading.local()  # per thread: how deep in session() it is
        self._released_at: float | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._opened_at = 0.0
        self._fingerprint: tuple[int, ...] | None = None
        self._closed = threading.Event()
        self._serving = False
        self.search_index = SearchIndex()
        self._dictionaries: list[dict[str, Any]] | None = None
        self._ranges: dict[str, tuple[int, int, int]] = {}
        self._warming: tuple[duckdb.DuckDBPyConnection, threading.Thread] | None = None
        with self.session():
            pass  # open once now, so a store the browser cannot lock down fails at start
        self._watcher = threading.Thread(target=self._give_way_when_idle, name="featurelens-serve-turns",
                                         daemon=True)
        self._watcher.start()

    # -- the file: opened per session, given up when a job waits ----------------------
    def _open(self) -> None:
        if self._released_at is not None:  # the job we gave the file to gets in first
            time.sleep(max(0.0, self._released_at + HANDOVER_S - time.time()))

        def connect() -> duckdb.DuckDBPyConnection:
            return duckdb.connect(str(self.path), read_only=True)

        try:
            con = retry_while_locked(self.path, connect, is_lock_conflict, self.wait_s)
        except duckdb.IOException as error:
            raise StoreError(f"The store {self.path} is being written by another process, which did not "
                             f"give the browser a turn within {self.wait_s:g} s ({_one_line(error)}); "
                             "reload the page in a moment.") from None
        except duckdb.Error as error:
            raise StoreError(f"Cannot open the store {self.path} read-only: {_one_line(error)}") from None
        try:
            # DuckDB shares one instance per file within a process: a second browser on the
            # same store finds it already locked down, and must not try to set it again.
            locked = con.execute("SELECT current_setting('lock_configuration')").fetchone()[0]
            if not locked:
                con.execute("SET enable_progress_bar = false")
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
        except duckdb.Error as error:
            con.close()
            raise StoreError(f"Cannot open the store {self.path} read-only: {_one_line(error)}") from None
        self._con, self._opened_at = con, time.time()
        fingerprint = _fingerprint(self.path)
        if fingerprint != self._fingerprint:
            changed = self._fingerprint is not None
            self._fingerprint = fingerprint
            if changed:  # a job wrote meanwhile: listings and the index are stale
                self._dictionaries, self._ranges = None, {}
                self.search_index = SearchIndex()
                if self._serving:
                    self.start_warming()

    def _release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._released_at = time.time()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold the file open for a group of queries (a page); nests within a thread.

        When a job waits for the file, new pages wait until the pages in progress end,
        the file is given away, and the job has had its turn; so a busy browser cannot
        starve a job."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._cond:
            if self._con is not None and waited_since(self.path, self._opened_at):
                self._cond.wait_for(lambda: self._users == 0, timeout=self.wait_s)
                if self._users == 0:
                    self._release()
            if self._con is None:
                self._open()
            self._users += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            self._leave()

    def _leave(self) -> None:
        """One user is done; the last one gives the file to a job that asked for it."""
        with self._cond:
            self._users -= 1
            if self._users == 0:
                if waited_since(self.path, self._opened_at):
                    self._release()
                self._cond.notify_all()

    def _give_way_when_idle(self) -> None:
        """Between pages, give the file to a job that asked for it."""
        while not self._closed.wait(IDLE_CHECK_S):
            with self._lock:
                if self._con is not None and self._users == 0 and waited_since(self.path, self._opened_at):
                    self._release()

    def close(self) -> None:
        """Stop any background warm-up, then close the connection."""
        self._closed.set()
        warming, self._warming = self._warming, None
        if warming is not None:
            cursor, thread = warming
            if thread.is_alive():
                try:
                    cursor.interrupt()
                except duckdb.Error:
                    pass  # it finished meanwhile
                thread.join(timeout=30)
        with self._lock:
            self._release()

    def start_warming(self) -> None:
        """Build the cached listings and the search index in a background thread."""
        self._serving = True
        with self._lock:
            if self._con is None:
                self._open()
            cursor = self._con.cursor()  # type: ignore[union-attr]
            self._users += 1  # the thread holds the file until the index is built
        thread = threading.Thread(target=self._warm_and_release, args=(cursor,), name="featurelens-serve-index",
                                  daemon=True)
        self._warming = (cursor, thread)
        thread.start()

    def _warm_and_release(self, cursor: duckdb.DuckDBPyConnection) -> None:
        try:
            self._build(cursor)  # start_warming counted this thread as a user already
        finally:
            self._leave()

    def warm(self) -> None:
        """Compute the cached listings and the search index (blocking)."""
        with self.session():
            self._build(self._cursor())

    def _build(self, cur: duckdb.DuckDBPyConnection) -> None:
        index = self.search_index
        try:
            if self._dictionaries is None:
                result = cur.execute(_DICTIONARIES_SQL)
                names = [d[0] for d in result.description]
                self._dictionaries = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
            index.build(lambda sql: _arrow(cur.sql(sql)))
        except duckdb.Error:
            pass  # interrupted by close(), or the fallback queries will report the problem
        finally:
            cur.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the open file; callers hold a :meth:`session`."""
        with self._lock:
            if self._con is None:
                self._open()
            return self._con.cursor()  # type: ignore[union-attr]

    def table(self, query: str, params: list[Any]) -> Any:
        """Rows of a parameterised query as one Arrow table, for readers that build their
        output column by column (the exports: a million features are twenty million
        example rows, and a Python object per cell is most of their cost)."""
        with self.session():
            cur = self._cursor()
            try:
                return cur.sql(query, params=params).to_arrow_table()
            except duckdb.Error:
                pass
            finally:
                cur.close()
        self._dicts(query, params)  # the row path says in one sentence what is wrong
        raise StoreError(f"Reading the store {self.path} failed; check that its tables are the ones "
                         "featurelens wrote.")

    def _column_dicts(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        """:meth:`_dicts` for plain columns (numbers, strings, their lists), converted column
        by column through Arrow: half the cost of row tuples for the list columns of
        examples, which an export of a million features reads twenty million of."""
        table = self.table(query, params)
        names = table.column_names  # a new list on every access: asked once, not once per row
        columns = [table.column(name).to_pylist() for name in names]
        return [dict(zip(names, values)) for values in zip(*columns)]

    def _dicts(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        with self.session():
            cur = self._cursor()
            try:
                result = cur.execute(query, params)
                names = [d[0] for d in result.description]
                return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
            except duckdb.PermissionException as error:
                raise StoreError(
                    f"The store {self.path} has a table replaced by a view that reads files "
                    f"({_one_line(error)}); the browser and exports read only the store itself, so "
                    "turn that view back into a table (CREATE TABLE ... AS SELECT ...).") from None
            except duckdb.Error as error:
                raise StoreError(f"Reading the store {self.path} failed ({_one_line(error)}); "
                                 "check that its tables are the ones featurelens wrote.") from None
            finally:
                cur.close()

    def query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """Rows of a parameterised query as dicts (for the page modules' own queries)."""
        return self._dicts(sql, params)

    def running_jobs(self) -> list[dict[str, Any]]:
        """Labeling and extraction runs marked running, with their stored progress."""
        rows = self._dicts("SELECT run_id, kind, CAST(progress AS VARCHAR) AS progress, started_at FROM runs "
                           "WHERE status = 'running' ORDER BY started_at", [])
        for row in rows:
            try:
                row["progress"] = json.loads(row["progress"]) if row["progress"] else {}
            except json.JSONDecodeError:
                row["progress"] = {}
        return rows

    # -- listings ------------------------------------------------------------------
    def dictionaries(self) -> list[dict[str, Any]]:
        """Every dictionary with its model, hookpoint and how many features are stored."""
        if self._dictionaries is None:
            self._dictionaries = self._list_dictionaries()
        return [dict(d) for d in self._dictionaries]

    def _list_dictionaries(self) -> list[dict[str, Any]]:
        return self._dicts(_DICTIONARIES_SQL, [])

    def _range(self, dictionary_id: str) -> tuple[int, int, int]:
        """``(count, min, max)`` of the dictionary's stored feature indices (cached)."""
        if dictionary_id not in self._ranges:
            row = self._dicts("SELECT count(*) AS n, min(feature) AS lo, max(feature) AS hi FROM features "
                              "WHERE dictionary_id = ?", [dictionary_id])[0]
            self._ranges[dictionary_id] = (int(row["n"]), int(row["lo"] or 0), int(row["hi"] or -1))
        return self._ranges[dictionary_id]

    def features(self, dictionary_id: str, page: int = 0, size: int = 50) -> Page:
        """Features of one dictionary in index order, with their best-scored explanation.

        When the stored indices are contiguous (the usual case) a page is a key range,
        read through the zone maps; otherwise it falls back to ``OFFSET``.
        """
        count, lo, hi = self._range(dictionary_id)
        columns = "feature, density, max_activation, fire_count"
        if count and hi - lo + 1 == count:
            first = lo + page * size
            rows = self._dicts(f"SELECT {columns} FROM features WHERE dictionary_id = ? AND feature "
                               "BETWEEN ? AND ? ORDER BY feature", [dictionary_id, first, first + size - 1])
            has_next = first + size <= hi
        else:
            rows = self._dicts(f"SELECT {columns} FROM features WHERE dictionary_id = ? ORDER BY feature "
                               "LIMIT ? OFFSET ?", [dictionary_id, size + 1, page * size])
            has_next = len(rows) > size
            rows = rows[:size]
        self._attach_best(dictionary_id, rows)
        return Page(rows, page, has_next)

    def features_in(self, dictionary_id: str, features: list[int]) -> list[dict[str, Any]]:
        """Listing rows (as :meth:`features`) for the given feature indices."""
        wanted = sorted({int(f) for f in features})
        if not wanted:
            return []
        rows = self._dicts(
            "SELECT feature, density, max_activation, fire_count FROM features "
            "WHERE dictionary_id = ? AND feature BETWEEN ? AND ? AND list_contains(?, feature) "
            "ORDER BY feature", [dictionary_id, wanted[0], wanted[-1], wanted])
        self._attach_best(dictionary_id, rows)
        return rows

    def feature_list(self, dictionary_id: str, request: ListRequest, page: int = 0, size: int = 50) -> Page:
        """Features sorted and filtered as ``request`` asks, each with its best explanation
        and best score per scorer (``row["scores"]``)."""
        scorers = self.scorers(dictionary_id)
        if request.is_default:
            listing = self.features(dictionary_id, page, size)
            rows, has_next = listing.rows, listing.has_next
            if rows and scorers:
                attach_scores(self._dicts, dictionary_id, rows)
        else:
            rows, has_next = list_features(self._dicts, dictionary_id, request, scorers, page, size)
            self._attach_best(dictionary_id, rows)
        for row in rows:
            row.setdefault("scores", {})
        return Page(rows, page, has_next)

    def scorers(self, dictionary_id: str) -> list[str]:
        """Scorers that scored any of the dictionary's explanations."""
        return scorers_of(self._dicts, dictionary_id)

    def _attach_best(self, dictionary_id: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        wanted = sorted(int(r["feature"]) for r in rows)
        span = [dictionary_id, wanted[0], wanted[-1], wanted]
        best = {r["feature"]: r for r in self._dicts(
            "SELECT e.feature, arg_max(e.text, coalesce(s.score, -2)) AS text, max(s.score) AS score, "
            "arg_max(e.explainer, coalesce(s.score, -2)) AS explainer, arg_max(e.llm, coalesce(s.score, -2)) AS llm "
            "FROM (SELECT * FROM explanations WHERE dictionary_id = ? AND feature BETWEEN ? AND ? "
            "      AND list_contains(?, feature)) e "
            "LEFT JOIN (SELECT explanation_id, score FROM scores WHERE dictionary_id = ? AND feature "
            "      BETWEEN ? AND ? AND status = 'ok') s ON s.explanation_id = e.explanation_id "
            "GROUP BY e.feature", span + span[:3])}
        for row in rows:
            hit = best.get(row["feature"], {})
            row["text"] = hit.get("text")
            row["score"] = hit.get("score")
            row["explainer"], row["llm"] = hit.get("explainer"), hit.get("llm")

    def search(self, text: str, page: int = 0, size: int = 50) -> Page:
        """Explanations containing ``text`` (case-insensitive), best scores first."""
        if self.search_index.ready:
            rows = self.search_index.search(text, page * size, size + 1)
        else:
            where = "WHERE e.text ILIKE ? ESCAPE '\\'" if text else ""
            rows = self._dicts(INDEX_SQL.format(where=where) + " LIMIT ? OFFSET ?",
                               ([like_pattern(text)] if text else []) + [size + 1, page * size])
        return Page(rows[:size], page, len(rows) > size)

    def search_meaning(self, text: str, page: int = 0, size: int = 50) -> tuple[Page, str | None]:
        """Explanations closest in meaning to ``text`` (stored embeddings, cosine similarity),
        and a note when none can be shown (no explanation embedded yet: the browser reads the
        store without writing, so ``featurelens search`` embeds them)."""
        from featurelens.core.store import explanation_search

        try:
            embedded = self._dicts("SELECT count(*) AS n FROM explanation_embeddings", [])[0]["n"]
        except FeaturelensError:  # a store older than the table, opened read-only
            embedded = 0
        if not embedded:
            return Page([], page, False), ("No explanation is embedded for search by meaning yet; run "
                                           "featurelens search \"...\" once on this store (it embeds them), "
                                           "then search here again.")

        def rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
            return [tuple(r.values()) for r in self._dicts(sql, params)]

        found = explanation_search.search(rows, text, limit=size + 1, offset=page * size)
        return Page(found[:size], page, len(found) > size), None

    def token_matches(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Features whose top examples peak on a token containing ``text`` (strongest first)."""
        return self._dicts(
            "SELECT x.dictionary_id, x.feature, s.token_strs[x.max_position + 1] AS token, "
            "max(x.max_activation) AS max_activation FROM examples x JOIN sequences s "
            "ON s.corpus_id = x.corpus_id AND s.sequence_id = x.sequence_id WHERE x.kind = 'top' "
            "AND s.token_strs[x.max_position + 1] ILIKE ? ESCAPE '\\' GROUP BY ALL "
            "ORDER BY max_activation DESC, x.dictionary_id, x.feature LIMIT ?", [like_pattern(text), limit])

    def sql(self, query: str, limit: int = SQL_ROW_LIMIT, timeout_s: float = SQL_TIMEOUT_S) -> SqlResult:
        """Run a user's query read-only; any failure is one FeaturelensError line.

        Bounded end to end: every text cell is cut to :data:`SQL_CELL_CHARS` inside DuckDB
        (a 200 MB value never reaches Python), at most :data:`SQL_COLUMNS` columns and
        :data:`SQL_RESULT_CHARS` characters of cells are kept, and the time limit covers
        running, fetching and redacting, so the store (and every other page) is held no
        longer than ``timeout_s``.
        """
        if not query.strip():
            raise FeaturelensError("The SQL box is empty; write a query such as SELECT * FROM features LIMIT 10.")
        too_long = FeaturelensError(
            f"The query ran longer than {timeout_s:g} s and was stopped; add a LIMIT or a "
            "WHERE clause, or run it with featurelens sql.")
        with self.session():
            cur = self._cursor()
            deadline = time.monotonic() + timeout_s
            timer = threading.Timer(timeout_s, cur.interrupt)
            timer.start()
            try:
                relation = cur.sql(query)
                if relation is None:
                    return SqlResult([], [], False)
                columns = list(relation.columns)
                cut = len(columns) > SQL_COLUMNS
                relation = _bounded(relation, SQL_COLUMNS).limit(limit + 1)
                rows, total = [], 0
                for row in relation.fetchall():
                    total += sum(len(v) if isinstance(v, str) else 8 for v in row)
                    if total > SQL_RESULT_CHARS and rows:
                        cut = True
                        break
                    rows.append(row)
                # a store written before redaction existed may hold a key in an error text
                secrets = configured_secrets()  # once for the page, not once per cell
                shown = []
                for row in rows[:limit]:
                    if time.monotonic() > deadline:
                        raise too_long
                    shown.append(tuple(redact(value, secrets) for value in row))
            except duckdb.InterruptException:
                raise too_long from None
            except duckdb.Error as error:
                raise FeaturelensError(f"SQL error: {_one_line(error)}") from None
            finally:
                timer.cancel()
                cur.close()
            return SqlResult(columns[:SQL_COLUMNS], shown, len(rows) > limit or cut)

    # -- features with everything a page shows ---------------------------------------
    def feature(self, dictionary_id: str, feature: int, max_examples: int = 20) -> FeatureData | None:
        """The feature's statistics, examples with tokens, and explanations with scores."""
        found = self.feature_batch(dictionary_id, [feature], max_examples)
        if found and found[0].stats.get("top_logits") is None:
            found[0].logits_pending = self._logits_pending(dictionary_id)
        return found[0] if found else None

    def _logits_pending(self, dictionary_id: str) -> dict[str, Any] | None:
        """The marker of the dictionary's latest extraction when it was lazy about logit
        effects. The browser reads the store read-only and, without ``--model``, loads no
        model, so it does not compute them: the page names the command that does (explain
        and export compute them themselves; ``serve --model`` computes them for the page)."""
        rows = self._dicts(
            "SELECT CAST(json_extract(config, '$.' || ?) AS VARCHAR) AS marker FROM runs WHERE kind = 'extract' "
            "AND status = 'done' AND json_extract_string(config, '$.dictionary_id') = ? "
            "ORDER BY finished_at DESC NULLS LAST LIMIT 1", [PENDING, dictionary_id])
        marker = json.loads(rows[0]["marker"]) if rows and rows[0]["marker"] else None
        return marker if isinstance(marker, dict) else None

    def feature_batch(self, dictionary_id: str, features: list[int], max_examples: int = 20,
                      max_quantile: int | None = None) -> list[FeatureData]:
        """:meth:`feature` for many features of one dictionary in four queries (exports);
        ``max_quantile`` quantile examples per feature (default ``max_examples``: the
        Neuronpedia export asks for all of them, since ranks run weakest to strongest)."""
        if not features:
            return []
        wanted = sorted({int(f) for f in features})
        lo, hi = wanted[0], wanted[-1]
        params = [dictionary_id, lo, hi, wanted]
        stats = self.feature_stats(dictionary_id, wanted)
        if not stats:
            return []
        dictionary = self._dicts("SELECT * FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])
        special = special_tokens_of(self._dicts, dictionary[0]["model_id"] if dictionary else None)
        out = {int(s["feature"]): FeatureData(s, {"top": [], "quantile": [], "random": []}, [],
                                              dictionary[0] if dictionary else {}, special) for s in stats}
        for row in self._column_dicts(
            "SELECT x.feature, x.kind, x.rank, x.quantile, x.activations, x.max_activation, "
            "x.max_position, x.sequence_id, s.token_strs, s.document FROM examples x "
            "JOIN sequences s ON s.corpus_id = x.corpus_id AND s.sequence_id = x.sequence_id "
            "WHERE x.dictionary_id = ? AND x.feature BETWEEN ? AND ? AND list_contains(?, x.feature) "
            "AND x.rank < (CASE WHEN x.kind = 'random' THEN ? WHEN x.kind = 'quantile' THEN ? ELSE ? END) "
            "ORDER BY x.feature, x.kind, x.rank",
            params + [min(max_examples, RANDOM_SHOWN), max_examples if max_quantile is None else max_quantile,
                      max_examples]):
            target = out.get(int(row["feature"]))
            if target is not None:
                target.examples.setdefault(row["kind"], []).append(row)
        for e in self.explanations_of(dictionary_id, wanted):
            target = out.get(int(e["feature"]))
            if target is not None:
                target.explanations.append(e)
        from featurelens.browser.steering_panel import attach_effects
        attach_effects(self._dicts, dictionary_id, wanted, out)
        return [out[f] for f in wanted if f in out]

    def feature_stats(self, dictionary_id: str, features: list[int]) -> list[dict[str, Any]]:
        """The ``features`` rows of the sorted ``features`` of one dictionary, in order."""
        if not features:
            return []
        return self._dicts(f"SELECT * FROM features WHERE {_BATCH_WHERE} ORDER BY feature",
                           [dictionary_id, features[0], features[-1], features])

    def explanations_of(self, dictionary_id: str, features: list[int]) -> list[dict[str, Any]]:
        """The explanations of the sorted ``features`` (by feature, then oldest first), each
        with its ``scores`` (by scorer, then LLM)."""
        if not features:
            return []
        params = [dictionary_id, features[0], features[-1], features]
        explanations = self._dicts(
            f"SELECT feature, explanation_id, explainer, llm, text, created_at FROM explanations "
            f"WHERE {_BATCH_WHERE} ORDER BY feature, created_at, explanation_id", params)
        scores: dict[str, list[dict[str, Any]]] = {}
        for s in self._dicts(
            f"SELECT explanation_id, scorer, llm, score, status, n_parse_failures FROM scores "
            f"WHERE {_BATCH_WHERE} ORDER BY scorer, llm", params):
            scores.setdefault(s["explanation_id"], []).append(s)
        for e in explanations:
            e["scores"] = scores.get(e["explanation_id"], [])
        return explanations

    def neighbours(self, dictionary_id: str, feature: int) -> tuple[int | None, int | None]:
        """The previous and next stored feature indices (for page navigation)."""
        count, lo, hi = self._range(dictionary_id)
        if count and hi - lo + 1 == count:  # contiguous: no scan needed
            return (feature - 1 if feature > lo else None), (feature + 1 if feature < hi else None)
        row = self._dicts(
            "SELECT (SELECT max(feature) FROM features WHERE dictionary_id = ? AND feature < ?) AS prev, "
            "(SELECT min(feature) FROM features WHERE dictionary_id = ? AND feature > ?) AS next",
            [dictionary_id, feature, dictionary_id, feature])[0]
        return row["prev"], row["next"]

    def feature_keys(self, where: str | None = None, dictionary_id: str | None = None) -> list[tuple[str, int]]:
        """``(dictionary_id, feature)`` of every feature matching the filters, in order."""
        condition, params = Selection(where, dictionary_id).condition()
        query = f"SELECT dictionary_id, feature FROM features WHERE {condition}"
        with self.session():
            cur = self._cursor()
            try:
                return [(d, int(f)) for d, f in cur.execute(query + " ORDER BY 1, 2", params).fetchall()]
            except duckdb.Error as error:
                raise FeaturelensError(
                    f"--where {where!r} is not a valid condition on the features table "
                    f"({_one_line(error)}); write e.g. --where 'density < 0.01'.") from None
            finally:
                cur.close()
