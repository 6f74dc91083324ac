"""``featurelens sql``: read-only by default, four output formats, clear failures."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import featurelens

QUERY = "SELECT feature, density FROM features ORDER BY feature"


@pytest.fixture
def filled(store_path: Path) -> Path:
    with featurelens.open_store(store_path) as store:
        store.insert("features", pl.DataFrame({
            "dictionary_id": ["d", "d", "d"], "feature": [0, 1, 2], "corpus_id": ["c"] * 3,
            "n_tokens": [100, 100, 100], "fire_count": [1, 5, 50],
            "density": [0.01, 0.05, 0.5],
        }))
    return store_path


def test_table_output(cli, filled: Path) -> None:
    result = cli("sql", QUERY, "--store", filled)
    assert result.exit_code == 0, result.output
    assert "feature" in result.stdout and "0.05" in result.stdout and "(3, 2)" in result.stdout


def test_csv_to_stdout(cli, filled: Path) -> None:
    result = cli("sql", QUERY, "--store", filled, "--format", "csv")
    assert result.stdout.splitlines() == ["feature,density", "0,0.01", "1,0.05", "2,0.5"]


def test_json_to_stdout(cli, filled: Path) -> None:
    result = cli("sql", QUERY, "--store", filled, "--format", "json")
    assert json.loads(result.stdout) == [
        {"feature": 0, "density": 0.01}, {"feature": 1, "density": 0.05},
        {"feature": 2, "density": 0.5},
    ]


def test_parquet_to_stdout_and_to_file(cli, filled: Path, tmp_path: Path) -> None:
    result = cli("sql", QUERY, "--store", filled, "--format", "parquet")
    assert result.exit_code == 0
    frame = pl.read_parquet(io.BytesIO(result.stdout_bytes))
    assert frame["density"].to_list() == [0.01, 0.05, 0.5]
    out = tmp_path / "out.parquet"
    result = cli("sql", QUERY, "--store", filled, "--format", "parquet", "--output", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert pl.read_parquet(out)["feature"].to_list() == [0, 1, 2]


def test_output_file_for_text_formats(cli, filled: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.csv"
    result = cli("sql", QUERY, "--store", filled, "--format", "csv", "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert pl.read_csv(out)["feature"].to_list() == [0, 1, 2]


def test_write_is_refused_without_flag(cli, filled: Path) -> None:
    result = cli("sql", "DELETE FROM features", "--store", filled)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: This statement changes the store, which is opened read-only; pass --write "
        "(Python: open_store(path)) to allow writes."
    ]
    with featurelens.open_store(filled, read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM features")["n"][0] == 3


def test_write_allowed_with_flag(cli, filled: Path) -> None:
    result = cli("sql", "DELETE FROM features WHERE feature = 0", "--store", filled, "--write")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(filled, read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM features")["n"][0] == 2


def test_store_from_environment(cli, filled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_STORE", str(filled))
    result = cli("sql", "SELECT count(*) AS n FROM features", "--format", "csv")
    assert result.stdout.splitlines() == ["n", "3"]


def test_missing_store_is_one_clear_line(cli, tmp_path: Path) -> None:
    result = cli("sql", "SELECT 1", "--store", tmp_path / "nope.duckdb")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no feature store at" in lines[0]
    assert not (tmp_path / "nope.duckdb").exists()


def test_invalid_sql_is_one_line_on_stderr_exit_1(filled: Path) -> None:
    """The real console script, as a user runs it: no traceback, status 1."""
    exe = Path(sys.executable).with_name("featurelens")
    proc = subprocess.run([str(exe), "sql", "SELEC feature FROM features", "--store", str(filled)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: The query failed: Parser Error: syntax error")
    assert "Traceback" not in proc.stderr


def test_unknown_table_names_the_problem(cli, filled: Path) -> None:
    result = cli("sql", "SELECT * FROM featurez", "--store", filled)
    assert result.exit_code == 1
    assert "featurez" in result.stderr and len(result.stderr.strip().splitlines()) == 1
