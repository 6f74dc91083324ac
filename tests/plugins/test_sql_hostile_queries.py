"""``featurelens sql`` without ``--write`` as an attacker (or an unlucky user) drives it
(issue 26, items 2 and 10): an ATTACH whose options say writable in any spelling, an
``--output`` aimed at the store, results polars cannot hold, and an empty query. Nothing
may be written, and every refusal is one sentence, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

import featurelens


@pytest.fixture
def made(store_path):
    featurelens.open_store(store_path).close()
    return store_path


@pytest.mark.parametrize("options", [
    "(READ_ONLY 0)", "(READ_ONLY no)", "(read_only false)", "(READ_ONLY 'off')", "(READ_ONLY, READ_ONLY 0)",
    "(TYPE duckdb)", "/* (READ_ONLY) */", "(READ_ONLY) -- writable after all\n", "(READ_ONLY 'n')",
    "(ACCESS_MODE READ_WRITE, READ_ONLY)",
])
def test_an_attach_that_is_not_plainly_read_only_is_refused_and_creates_nothing(cli, made, options):
    target = made.parent / "planted.duckdb"
    result = cli("sql", f"ATTACH '{target}' AS n {options}", "--store", made)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert not target.exists()


def test_a_writable_attach_does_not_replay_another_files_pending_wal(cli, made):
    other = made.parent / "other.duckdb"
    wal = other.with_name(other.name + ".wal")
    subprocess.run([sys.executable, "-c", (
        "import duckdb, os; con = duckdb.connect(%r); con.execute(\"SET checkpoint_threshold = '1GB'\"); "
        "con.execute('CREATE TABLE t AS SELECT 1 AS x'); os._exit(0)") % str(other)], check=True)
    assert wal.exists()
    before = (other.read_bytes(), wal.read_bytes())
    result = cli("sql", f"ATTACH '{other}' AS n (READ_ONLY no)", "--store", made)
    assert result.exit_code == 1 and "ATTACH" in result.output
    assert wal.exists() and (other.read_bytes(), wal.read_bytes()) == before


def test_output_aimed_at_the_store_or_a_database_is_refused(cli, made):
    size = made.stat().st_size
    for target in (made, made.parent / "." / made.name):
        result = cli("sql", "select 1", "--store", made, "-o", target)
        assert result.exit_code == 1 and "store" in result.output, result.output
    assert made.stat().st_size == size
    with featurelens.open_store(made, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM features")[0][0] == 0
    other = made.parent / "other.duckdb"
    duckdb.connect(str(other)).close()
    result = cli("sql", "select 1", "--store", made, "-o", other)
    assert result.exit_code == 1 and "DuckDB database" in result.output


@pytest.mark.parametrize("query, shown", [
    ("select interval 3 day as v", "3 days"),
    ("select union_value(k := 1) as v", "1"),
    ("select 'infinity'::timestamp as v", "infinity"),
    ("select '294247-01-10'::date as v", "294247-01-10"),
    ("select * from (values ('2020-01-01'::timestamp), ('infinity'::timestamp)) t(v)", "infinity"),
    ("select '-infinity'::date as v, 1 as v", "-infinity"),
])
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_results_polars_cannot_hold_are_shown_as_text(cli, made, query, shown, fmt):
    result = cli("sql", query, "--format", fmt, "--store", made)
    assert result.exit_code == 0, result.output
    assert shown in result.output and "panicked" not in result.output


def test_a_list_column_in_csv_is_json_text(cli, made):
    result = cli("sql", "select [1, 2] as l, {'a': 'x'} as s", "--format", "csv", "--store", made)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "l,s" and json.loads(lines[1].split('",')[0].strip('"')) == [1, 2]


@pytest.mark.parametrize("query", ["", "   ", "\n-- nothing\n", "/* nothing */"])
def test_an_empty_query_is_refused(cli, made, query):
    result = cli("sql", query, "--store", made)
    assert result.exit_code == 1 and ("no statement" in result.output or "empty" in result.output), result.output


def test_output_into_a_missing_folder_is_one_sentence(cli, made):
    result = cli("sql", "select 1", "--store", made, "-o", made.parent / "missing" / "out.csv")
    assert result.exit_code == 1 and "does not exist" in result.output
