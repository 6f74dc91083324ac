"""The feature store: migrations, transactions, crashes, locks and the Python API."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import featurelens
from featurelens.core.errors import StoreError
from featurelens.core.store import schema_doc
from featurelens.core.store.database import Store, migrations

ROOT = Path(__file__).resolve().parents[2]


def _runs(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({
        "run_id": [f"run-{i}" for i in range(start, start + n)],
        "kind": ["extract"] * n,
        "config": ['{"layer": 6}'] * n,
        "status": ["done"] * n,
        "featurelens_version": [featurelens.__version__] * n,
    })


def _examples(n: int) -> pa.Table:
    return pa.table({
        "dictionary_id": ["d"] * n,
        "feature": pa.array(range(n), pa.int32()),
        "kind": ["top"] * n,
        "rank": pa.array([0] * n, pa.int32()),
        "corpus_id": ["c"] * n,
        "sequence_id": pa.array(range(n), pa.int64()),
        "activations": [[0.0, 1.5, 0.25]] * n,
        "max_activation": pa.array([1.5] * n, pa.float32()),
        "max_position": pa.array([1] * n, pa.int32()),
    })


def _holder(path: Path, mode: str) -> subprocess.Popen:
    """Another process that holds the store open (``write`` or ``read``) until killed."""
    code = textwrap.dedent(f"""
        import sys, time, featurelens
        store = featurelens.open_store({str(path)!r}, read_only={mode == 'read'})
        print("open", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def test_new_store_records_every_migration(store: Store) -> None:
    applied = store.sql("SELECT name, featurelens_version FROM schema_migrations ORDER BY name")
    assert applied["name"].to_list() == [name for name, _ in migrations()]
    assert set(applied["featurelens_version"]) == {featurelens.__version__}
    for table in ("runs", "models", "dictionaries", "sequences", "features", "examples",
                  "explanations", "scores", "llm_calls", "batches"):
        assert table in store.tables()


def test_reopening_applies_nothing_twice(store_path: Path) -> None:
    featurelens.open_store(store_path).close()
    with featurelens.open_store(store_path) as store:
        assert store.sql("SELECT count(*) AS n FROM schema_migrations")["n"][0] == len(migrations())


def test_store_from_newer_featurelens_is_refused_clearly(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        store.execute("INSERT INTO schema_migrations (name, featurelens_version) "
                      "VALUES ('9999_from_the_future', '99.0')")
    for read_only in (False, True):
        with pytest.raises(StoreError, match="newer featurelens.*9999_from_the_future.*upgrade"):
            featurelens.open_store(store_path, read_only=read_only)


def test_open_store_sql_returns_polars(store: Store) -> None:
    store.insert("runs", _runs(3))
    frame = store.sql("SELECT run_id FROM runs WHERE run_id > ? ORDER BY 1", ["run-0"])
    assert isinstance(frame, pl.DataFrame)
    assert frame["run_id"].to_list() == ["run-1", "run-2"]


def test_read_only_open_of_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no feature store at .*missing.duckdb"):
        featurelens.open_store(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_store_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_STORE", str(tmp_path / "env.duckdb"))
    with featurelens.open_store() as store:
        assert store.path == tmp_path / "env.duckdb"
    assert (tmp_path / "env.duckdb").exists()


def test_file_that_is_not_a_store_gets_a_clear_message(tmp_path: Path) -> None:
    junk = tmp_path / "notes.duckdb"
    junk.write_text("these are not the bytes of a database\n" * 200)
    with pytest.raises(StoreError, match="not a featurelens store"):
        featurelens.open_store(junk)


def test_failed_transaction_leaves_the_store_as_it_was(store: Store) -> None:
    store.insert("runs", _runs(2))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.insert("runs", _runs(5, start=10))
            store.insert("examples", _examples(100))
            raise RuntimeError("interrupted half-way")
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 2
    assert store.sql("SELECT count(*) AS n FROM examples")["n"][0] == 0


def test_conflicting_write_rolls_back_the_whole_batch(store: Store) -> None:
    store.insert("runs", _runs(2))
    with pytest.raises(StoreError, match="Writing 3 rows to runs failed"):
        store.insert("runs", _runs(3, start=1))  # run-1 is taken
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 2
    assert store.insert("runs", _runs(3, start=1), on_conflict="ignore") == 3
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 4


def test_conflict_inside_an_outer_transaction_is_a_store_error(store: Store) -> None:
    store.insert("runs", _runs(2))
    with pytest.raises(StoreError, match="Writing 1 rows to runs failed"):
        with store.transaction():
            store.insert("examples", _examples(10))
            store.insert("runs", _runs(1, start=1))  # run-1 is taken
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 2
    assert store.sql("SELECT count(*) AS n FROM examples")["n"][0] == 0


def test_process_killed_mid_write_leaves_the_store_as_it_was(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        store.insert("examples", _examples(10))
    code = textwrap.dedent(f"""
        import time, featurelens, pyarrow as pa
        store = featurelens.open_store({str(store_path)!r})
        n = 300_000
        rows = pa.table({{
            "dictionary_id": ["d"] * n, "feature": pa.array(range(10, n + 10), pa.int32()),
            "kind": ["top"] * n, "rank": pa.array([0] * n, pa.int32()), "corpus_id": ["c"] * n,
            "sequence_id": pa.array(range(n), pa.int64()),
            "activations": [[0.5] * 32] * n, "max_activation": pa.array([0.5] * n, pa.float32()),
            "max_position": pa.array([0] * n, pa.int32()),
        }})
        with store.transaction():
            store.insert("examples", rows)
            print("written", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.kill()  # SIGKILL: no cleanup, no rollback, no atexit
    proc.wait(timeout=30)
    with featurelens.open_store(store_path) as store:
        assert store.sql("SELECT count(*) AS n FROM examples")["n"][0] == 10
        store.insert("examples", _examples(20).slice(10))  # the store takes writes again
        assert store.sql("SELECT count(*) AS n FROM examples")["n"][0] == 20


def test_store_held_by_a_writer_names_the_process(store_path: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("FEATURELENS_LOCK_WAIT", "0.3")  # the holder never gives a turn: fail soon
    featurelens.open_store(store_path).close()
    holder = _holder(store_path, "write")
    try:
        for read_only in (False, True):
            with pytest.raises(StoreError, match=rf"in use by process {holder.pid} "):
                featurelens.open_store(store_path, read_only=read_only)
        result = cli("sql", "SELECT 1", "--store", store_path)
        assert result.exit_code == 1 and result.stdout == ""
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: The store {store_path} is in use by process {holder.pid} (")
    finally:
        _stop(holder)
    featurelens.open_store(store_path, read_only=True).close()


def test_readers_work_alongside_readers(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        store.insert("runs", _runs(4))
    holder = _holder(store_path, "read")
    try:
        with featurelens.open_store(store_path, read_only=True) as reader:
            assert reader.sql("SELECT count(*) AS n FROM runs")["n"][0] == 4
    finally:
        _stop(holder)


def test_same_process_read_and_write_conflict_is_explained(store_path: Path) -> None:
    with featurelens.open_store(store_path):
        with pytest.raises(StoreError, match="already open in this process"):
            featurelens.open_store(store_path, read_only=True)


def test_schema_document_matches_the_migrations() -> None:
    checked_in = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    assert checked_in == schema_doc.render(), (
        "docs/schema.md is stale; regenerate it with "
        "`.venv/bin/python -m featurelens.core.store.schema_doc > docs/schema.md`"
    )


def test_migration_files_are_named_and_ordered() -> None:
    names = [name for name, _ in migrations()]
    assert names == sorted(names)
    assert all(len(n) > 5 and n[:4].isdigit() and n[4] == "_" for n in names)
    assert len({n[:4] for n in names}) == len(names), "two migrations share a number"


def test_store_whose_migration_record_disagrees_is_refused_unchanged(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        store.insert("runs", _runs(1))
        store.execute("DELETE FROM schema_migrations WHERE name = '0001_initial'")
    with pytest.raises(StoreError, match="needs migration '0001_initial'"):
        featurelens.open_store(store_path, read_only=True)
    with pytest.raises(StoreError, match="Migration 0001_initial failed .* the store is unchanged"):
        featurelens.open_store(store_path)
    with _raw(store_path) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations()) - 1


def _raw(path: Path):
    import duckdb

    return duckdb.connect(str(path), read_only=True)


def test_unknown_on_conflict_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="on_conflict='skip' is not one of error, ignore, replace"):
        store.insert("runs", _runs(1), on_conflict="skip")


def test_store_in_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="folder .*no-such-dir for the store does not exist"):
        featurelens.open_store(tmp_path / "no-such-dir" / "s.duckdb")
    assert not (tmp_path / "no-such-dir").exists()
