"""What ``featurelens sql`` may run without ``--write``: queries that write nothing anywhere.

A read-only DuckDB handle keeps the store itself unchanged, but DuckDB can still write
files from a read-only connection (``COPY ... TO``, ``EXPORT DATABASE``, a writable
``ATTACH``, ``INSTALL``, profiling output, spilling to a temporary folder). So without
``--write`` every statement is checked against an allow-list before anything runs, and
the connection is configured so that nothing it does can create a file:

- allowed: ``SELECT``/``FROM``/``WITH``/``VALUES``/``DESCRIBE``/``SHOW``/``SUMMARIZE``/
  ``PIVOT``, ``EXPLAIN`` (``EXPLAIN ANALYZE`` only of those), the read-only ``PRAGMA`` s in
  :data:`READ_PRAGMAS`, and ``ATTACH ... (READ_ONLY)``;
- reading local files is allowed: ``read_csv``/``read_parquet``/``read_json``/``'file.csv'``
  in a query, and another DuckDB file attached read-only;
- everything else (``COPY``, ``EXPORT``, writable ``ATTACH``, ``INSTALL``/``LOAD``,
  ``SET``, ``CALL``, ``CREATE``/``INSERT``/...) is refused with one sentence; results are
  saved with ``--format``/``--output``.
"""

from __future__ import annotations

import re

import duckdb

from featurelens.core.errors import FeaturelensError

#: PRAGMAs that only read (schema and version information).
READ_PRAGMAS = frozenset({
    "table_info", "show", "show_tables", "show_tables_expanded", "database_list", "version",
    "platform", "storage_info", "database_size", "functions", "metadata_info", "user_agent",
})
_QUERY_TYPES = frozenset({"SELECT"})
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s*(?:\([^)]*\)\s*)?(?P<analyze>ANALY[SZ]E\b)?(?P<rest>.*)$",
                      re.I | re.S)
_PRAGMA = re.compile(r"^\s*PRAGMA\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<rest>.*)$", re.I | re.S)
_ATTACH_OPTIONS = re.compile(r"\((?P<options>[^()]*)\)\s*;?\s*$")
#: Values DuckDB reads as true; READ_ONLY with any other value (0, no, false, off) writes.
_TRUE = frozenset({"", "TRUE", "1", "ON", "YES", "T", "Y"})
#: Statements that change the store's contents or schema: a read-only handle refuses them anyway.
_STORE_CHANGES = frozenset({"INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "MERGE_INTO", "VACUUM",
                            "ANALYZE", "TRANSACTION", "CREATE_FUNC", "UPDATE_EXTENSIONS"})
_STORE_MESSAGE = ("This statement changes the store, which is opened read-only; "
                  "pass --write (Python: open_store(path)) to allow writes.")
_HINT = ("without --write, sql only reads (queries, EXPLAIN, read-only PRAGMAs, ATTACH ... "
         "(READ_ONLY)); save results with --format/--output, or pass --write to allow statements "
         "that write")


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No spilling to disk, no extension downloads, and no later change of those settings."""
    locked = con.execute("SELECT current_setting('lock_configuration')").fetchone()[0]
    if locked:
        return  # another read-only handle in this process already locked the shared instance
    con.execute("SET temp_directory = ''")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET lock_configuration = true")


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise one sentence if any statement of ``query`` could write a file or the store.

    A query DuckDB cannot parse passes: running it reports DuckDB's own parse error.
    """
    try:
        statements = con.extract_statements(query)
    except duckdb.Error:
        return
    for statement in statements:
        if _kind(statement) in _STORE_CHANGES or (
                _kind(statement) == "CREATE" and not re.search(r"\bSECRET\b", str(statement.query), re.I)):
            raise FeaturelensError(_STORE_MESSAGE)
        problem = _refusal(con, statement)
        if problem:
            raise FeaturelensError(f"{problem}; {_HINT}.")


def _kind(statement: object) -> str:
    return str(getattr(statement, "type", "")).rsplit(".", 1)[-1].upper()


def _first_word(text: str) -> str:
    words = text.split(None, 1)
    return words[0].upper().rstrip(";") if words else "(empty)"


def _refusal(con: duckdb.DuckDBPyConnection, statement: object) -> str | None:
    kind, text = _kind(statement), str(getattr(statement, "query", ""))
    if kind in _QUERY_TYPES:
        return None
    if kind == "EXPLAIN":
        match = _EXPLAIN.match(text)
        if match is None or not match["analyze"]:
            return None
        try:
            inner = con.extract_statements(match["rest"])
        except duckdb.Error:
            return "EXPLAIN ANALYZE runs its statement, and this one could not be checked"
        if all(_kind(s) in _QUERY_TYPES for s in inner):
            return None
        return "EXPLAIN ANALYZE runs its statement, and this one is not a query"
    if kind == "PRAGMA":
        match = _PRAGMA.match(text)
        name = match["name"].lower() if match else ""
        if name in READ_PRAGMAS and "=" not in (match["rest"] if match else ""):
            return None
        shown = f"PRAGMA {name}" if name else _first_word(text)
        return f"{shown} is not one of the read-only PRAGMAs ({', '.join(sorted(READ_PRAGMAS))})"
    if kind == "ATTACH":
        if _attached_read_only(text):
            return None
        return ("ATTACH without exactly (READ_ONLY) can create or change a database file "
                "(READ_ONLY takes no value or true, the only other option is TYPE)")
    if kind == "COPY":
        return "COPY reads into or writes out of the store's tables as files"
    if kind == "EXPORT":
        return "EXPORT DATABASE writes files"
    return f"{_first_word(text)} statements can change the store, files or settings"


def _code_and_mask(text: str) -> tuple[str, str]:
    """``text`` without its comments, and the same text with every quoted string's
    content replaced by ``_`` (so parentheses, commas and comment marks inside a file
    name count for nothing). Both have the same length, position for position."""
    code, mask = [], []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            code.append(" ")
            mask.append(" ")
        elif char in "'\"":
            j = i + 1
            while j < n:
                if text[j] == char:
                    if j + 1 < n and text[j + 1] == char:  # '' inside a string
                        j += 2
                        continue
                    break
                j += 1
            literal = text[i:j + 1]
            code.append(literal)
            mask.append(char + "_" * max(0, len(literal) - 2) + (char if len(literal) > 1 else ""))
            i = j + 1
        else:
            code.append(char)
            mask.append(char)
            i += 1
    return "".join(code), "".join(mask)


def _attached_read_only(text: str) -> bool:
    """Whether an ATTACH statement's options say read-only and nothing else that matters:
    ``READ_ONLY`` (with no value or a true one, in any case or quoting) and no spelling
    of false anywhere, other options only ``TYPE``. Comments are ignored, so a
    ``(READ_ONLY)`` inside one does not count."""
    code, mask = _code_and_mask(text)
    match = _ATTACH_OPTIONS.search(mask)
    if match is None:
        return False
    start, end = match.span("options")
    options, shape = code[start:end], mask[start:end]
    read_only = False
    at = 0
    for part in shape.split(","):
        item = options[at:at + len(part)].strip()
        at += len(part) + 1
        name, _, value = item.partition(" ")
        name, value = name.strip().upper(), value.strip().strip("'\"").strip().upper()
        if name == "READ_ONLY":
            if value not in _TRUE:
                return False
            read_only = True
        elif name != "TYPE" or not value:
            return False
    return read_only
