"""``featurelens sql`` without ``--write`` writes nothing anywhere: not the store, not a file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import polars as pl
import pytest

import featurelens


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    with featurelens.open_store(path) as store:
        store.insert("features", pl.DataFrame({
            "dictionary_id": ["d", "d"], "feature": [0, 1], "corpus_id": ["c"] * 2,
            "n_tokens": [100, 100], "fire_count": [1, 5], "density": [0.01, 0.05],
        }))
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


WRITES = [
    "COPY features TO '{dir}/out.csv'",
    "COPY (SELECT 1) TO '{dir}/out.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{dir}/exported'",
    "ATTACH '{dir}/new.duckdb' AS other (READ_WRITE)",
    "ATTACH '{dir}/new.duckdb' AS other",
    "ATTACH '{dir}/new.duckdb' AS other (READ_ONLY false)",
    "SELECT 1; COPY features TO '{dir}/second.csv'",
    "EXPLAIN ANALYZE COPY features TO '{dir}/explained.csv'",
    "INSTALL httpfs",
    "SET profile_output = '{dir}/profile.json'",
    "PRAGMA enable_profiling = 'json'",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CHECKPOINT",
    "COPY FROM DATABASE memory TO other",
]


@pytest.mark.parametrize("statement", WRITES)
def test_statements_that_write_are_refused(cli, filled: Path, statement: str):
    folder = filled.parent
    before = _snapshot(folder)
    result = cli("sql", statement.format(dir=folder), "--store", filled)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--write" in lines[0]
    assert "Traceback" not in result.output
    assert _snapshot(folder) == before


def test_reads_of_local_files_are_allowed(cli, filled: Path, tmp_path: Path):
    csv = tmp_path / "labels.csv"
    csv.write_text("feature,label\n0,zero\n1,one\n")
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS answer")
    before = _snapshot(tmp_path)
    queries = [
        f"SELECT f.feature, l.label FROM features f JOIN read_csv('{csv}') l USING (feature) ORDER BY 1",
        f"ATTACH '{other}' AS o (READ_ONLY); SELECT answer FROM o.t",
        "PRAGMA table_info('features')",
        "EXPLAIN ANALYZE SELECT count(*) FROM features",
        "DESCRIBE features",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    ]
    outputs = [cli("sql", q, "--store", filled, "--format", "csv") for q in queries]
    assert [r.exit_code for r in outputs] == [0] * len(queries), [r.output for r in outputs]
    assert "1,one" in outputs[0].stdout and "42" in outputs[1].stdout
    assert _snapshot(tmp_path) == before


def test_write_flag_allows_copy(cli, filled: Path):
    target = filled.parent / "out.csv"
    result = cli("sql", f"COPY features TO '{target}'", "--store", filled, "--write")
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("dictionary_id")


def test_output_option_still_saves_results(cli, filled: Path):
    target = filled.parent / "saved.csv"
    result = cli("sql", "SELECT feature FROM features ORDER BY 1", "--store", filled,
                 "--format", "csv", "--output", target)
    assert result.exit_code == 0 and target.read_text() == "feature\n0\n1\n"
