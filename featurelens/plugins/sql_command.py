"""Built-in commands that belong to the host itself: ``sql`` and ``plugins``
(the latter lives in :mod:`featurelens.plugins.plugin_commands`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

import featurelens
from featurelens.core.cli.options import store_option
from featurelens.core.errors import FeaturelensError
from featurelens.plugins.plugin_commands import plugins_group

if TYPE_CHECKING:
    import polars as pl

featurelens_api = 1

_FORMATS = ("table", "csv", "json", "parquet")
_EMPTY = ('The query holds no statement; pass a SQL statement, for example '
          'featurelens sql "SELECT count(*) FROM features".')


@featurelens.hookimpl
def register_commands(cli: click.Group) -> None:
    """The host's own commands, added through the same hook as any plugin's."""
    cli.add_command(sql_command)
    cli.add_command(plugins_group)


@click.command("sql")
@click.argument("query")
@store_option
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")
@click.option("--write", is_flag=True, help="Open the store for writing and allow statements that write "
              "files (the default reads only, and writes nothing anywhere).")
def sql_command(query: str, store_path: Path | None, fmt: str, output: Path | None, write: bool) -> None:
    """Run a SQL QUERY against the feature store and print the result.

    Without --write nothing is written anywhere: queries may read the store and local
    files (read_csv, read_parquet, ATTACH ... (READ_ONLY)); COPY, EXPORT DATABASE, a
    writable ATTACH, INSTALL, SET and every statement that changes something are refused.
    """
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise FeaturelensError("Parquet is binary; pass --output FILE.parquet or redirect stdout.")
    if not query.strip():
        raise FeaturelensError(_EMPTY)
    from featurelens.core.store import (
        sql_guard,  # imported here: `featurelens --help` needs no DuckDB
    )
    from featurelens.core.store.database import Store
    from featurelens.core.store.location import default_store_path

    if output is not None:
        _check_output(output, store_path if store_path is not None else default_store_path())
    with Store.open(store_path, read_only=not write) as store:
        if not _statements(store.con, query):
            raise FeaturelensError(_EMPTY)
        if not write:
            sql_guard.lock_down(store.con)
            sql_guard.check_read_only(store.con, query)
        frame = _result(store, query)
    _emit(frame, fmt, output)


def _statements(con: Any, query: str) -> int:
    """How many statements ``query`` holds (1 when DuckDB cannot parse it: running it
    reports the parse error)."""
    import duckdb

    try:
        return len(con.extract_statements(query))
    except duckdb.Error:
        return 1


def _check_output(output: Path, store: Path | None) -> None:
    """Refuse an ``--output`` that would destroy something sql was not asked to write: the
    store itself or a file beside it that belongs to it (write-ahead log, journal, its
    key), any other DuckDB database, or a folder that does not exist."""
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise FeaturelensError(f"The folder {parent} for --output does not exist; create it "
                               "(mkdir -p) or pick a file in an existing folder.")
    if output.is_dir():
        raise FeaturelensError(f"--output {output} is a folder; name a file to write the result to.")
    if store is not None:
        own = {Path(f"{store}{suffix}").resolve() for suffix in ("", ".wal", ".journal", ".journal.key", ".tmp")}
        if output.resolve() in own:
            raise FeaturelensError(f"--output {output} is the store (or one of its own files); "
                                   "name another file for the result.")
    if output.is_file():
        with open(output, "rb") as handle:
            head = handle.read(12)
        if head[8:12] == b"DUCK":
            raise FeaturelensError(f"--output {output} is a DuckDB database, which sql does not "
                                   "overwrite; name another file for the result.")


#: DuckDB types polars cannot hold at all: always shown as DuckDB's text for them.
_AS_TEXT = ("INTERVAL", "UNION", "BIT", "VARINT", "BIGNUM")
#: Seconds from 1970 that polars (chrono) can show: about year -262000 to 262000.
_CHRONO_SECONDS = 262_000 * 365.25 * 86_400
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _result(store: Any, query: str) -> pl.DataFrame:
    """The query's rows as a frame. A single query (SELECT, WITH, ...) is fetched as Arrow
    first, and a column polars cannot hold (an INTERVAL, a UNION, an infinite TIMESTAMP, a
    DATE beyond year 262000) is fetched again as DuckDB's text for it; other statements run
    once, through the store."""
    import duckdb
    import polars as pl

    from featurelens.core.errors import StoreError

    try:
        statements = store.con.extract_statements(query)
    except duckdb.Error:
        return store.sql(query)  # the parse error, as the store words it
    if len(statements) != 1 or str(statements[0].type).rsplit(".", 1)[-1] != "SELECT":
        return store.sql(query)
    try:
        relation = store.con.sql(query)
        table = _arrow(relation)
    except duckdb.Error:
        return store.sql(query)  # a query only reads: run again for the store's own wording
    as_text = [i for i, (field, kind) in enumerate(zip(table.schema, relation.types))
               if any(str(kind).upper().startswith(k) for k in _AS_TEXT) or _beyond_chrono(table, field.name, i)]
    if as_text:
        def quoted(name: str) -> str:
            return '"' + name.replace('"', '""') + '"'

        columns = ", ".join(f"CAST(#{i + 1} AS VARCHAR) AS {quoted(c)}" if i in as_text
                            else f"#{i + 1} AS {quoted(c)}" for i, c in enumerate(relation.columns))
        try:
            table = _arrow(relation.project(columns))
        except duckdb.Error as error:
            raise StoreError(" ".join(str(error).split())) from None
    frame = pl.from_arrow(table.rename_columns(_unique(table.column_names)))
    return frame if isinstance(frame, pl.DataFrame) else frame.to_frame()


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (a frame needs that, SQL does not): ``a``, ``a_2``, ..."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _arrow(relation: Any) -> Any:
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


def _beyond_chrono(table: Any, name: str, index: int) -> bool:
    """Whether a date or timestamp column holds a value polars cannot show (infinity, or a
    year beyond about 262000), read from the Arrow integers without converting any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(index)
    kind = column.type
    if pa.types.is_timestamp(kind):
        limit = _CHRONO_SECONDS * _PER_SECOND[kind.unit]
        integers = column.cast(pa.int64())
    elif pa.types.is_date32(kind):
        limit, integers = _CHRONO_SECONDS / 86_400, column.cast(pa.int32())
    elif pa.types.is_date64(kind):
        limit, integers = _CHRONO_SECONDS * 1000, column.cast(pa.int64())
    else:
        return False
    if len(integers) == integers.null_count:
        return False
    bounds = pc.min_max(integers)
    return max(abs(bounds["min"].as_py()), abs(bounds["max"].as_py())) > limit


def _emit(frame: pl.DataFrame, fmt: str, output: Path | None) -> None:
    import polars as pl

    from featurelens.core.redaction import redact

    # text read back from a store written before redaction existed may hold a key
    text_columns = [name for name, dtype in frame.schema.items() if dtype == pl.Utf8]
    if text_columns:
        frame = frame.with_columns(pl.col(name).map_elements(redact, return_dtype=pl.Utf8)
                                   for name in text_columns)
    if fmt == "parquet":
        if output is not None:
            _replace(output, frame.write_parquet)
        else:
            frame.write_parquet(sys.stdout.buffer)
        return
    if fmt == "csv":
        nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
        if nested:  # CSV has no lists or structs: each such value is written as JSON text
            frame = frame.with_columns(
                pl.Series(name, [None if v is None else json.dumps(v, default=str)
                                 for v in frame[name].to_list()], dtype=pl.Utf8) for name in nested)
        text = frame.write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=str, indent=None) + "\n"
    else:
        import polars as pl

        with pl.Config(tbl_rows=200, tbl_cols=50, fmt_str_lengths=80, tbl_hide_dataframe_shape=False):
            text = str(frame) + "\n"
    if output is not None:
        _replace(output, lambda path: path.write_text(text, encoding="utf-8"))
    else:
        click.echo(text, nl=False)


def _replace(output: Path, write: Callable[[Path], Any]) -> None:
    """Write beside ``output`` and rename over it: a failure leaves the old file whole."""
    partial = output.with_name(f".{output.name}.partial")
    try:
        write(partial)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
