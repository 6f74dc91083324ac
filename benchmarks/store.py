"""Feature-store speed: bulk ingest of example rows, and a typical query over features.

Ingest writes realistic ``examples`` rows (32-token activation windows, 20 examples per
feature across top/quantile/random) through ``Store.insert`` -- one transaction per
chunk, primary key enforced -- and compares with two limits measured in the same run
on the same Arrow chunks:

* DuckDB's own raw load: ``INSERT`` into a table with no constraints, no transaction
  wrapper, no featurelens code (what DuckDB can do at best here);
* the same raw load into a table with the store's primary key (what resume-safe,
  duplicate-free writes cost in DuckDB itself, before any featurelens code);
* writing the same Arrow data to a Parquet file (a physical floor: encode and write).

The query benchmark fills ``features`` with 1M rows and times a typical "find
interesting features" query through ``open_store(path).sql`` (polars out), against the
same query through a bare DuckDB connection and through polars on an in-memory frame.

    .venv/bin/python benchmarks/store.py              # 10M examples, 1M features
    .venv/bin/python benchmarks/store.py --rows 1e6   # quicker
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

import featurelens

WINDOW = 32
PER_FEATURE = 20  # 10 top, 5 quantile, 5 random
QUERY = """
SELECT feature, density, max_activation, fire_count
FROM features
WHERE dictionary_id = 'sae-l6' AND density BETWEEN 1e-4 AND 1e-2 AND max_activation > 5
ORDER BY max_activation DESC
LIMIT 100
"""


def example_chunk(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    """Rows ``start .. start+n`` of the examples table, built vectorised."""
    i = np.arange(start, start + n, dtype=np.int64)
    slot = i % PER_FEATURE
    kind_codes = np.where(slot < 10, 0, np.where(slot < 15, 1, 2)).astype(np.int8)
    rank = np.where(slot < 10, slot, np.where(slot < 15, slot - 10, slot - 15)).astype(np.int32)
    acts = rng.exponential(1.0, size=(n, WINDOW)).astype(np.float32)
    acts[acts < 1.2] = 0.0  # most tokens do not fire
    acts[kind_codes == 2] = 0.0  # random windows are non-activating
    max_pos = acts.argmax(axis=1).astype(np.int32)
    offsets = pa.array(np.arange(0, (n + 1) * WINDOW, WINDOW, dtype=np.int32))
    kinds = pa.DictionaryArray.from_arrays(pa.array(kind_codes), pa.array(["top", "quantile", "random"]))
    quantile = pa.array(np.where(kind_codes == 1, rank, 0), mask=kind_codes != 1)
    return pa.table({
        "dictionary_id": pa.array(np.full(n, "sae-l6", dtype=object)),
        "feature": pa.array((i // PER_FEATURE).astype(np.int32)),
        "kind": kinds.cast(pa.string()),
        "rank": pa.array(rank),
        "corpus_id": pa.array(np.full(n, "corpus-a", dtype=object)),
        "sequence_id": pa.array(rng.integers(0, 5_000_000, n)),
        "activations": pa.ListArray.from_arrays(offsets, pa.array(acts.reshape(-1))),
        "max_activation": pa.array(acts.max(axis=1)),
        "max_position": pa.array(max_pos),
        "quantile": quantile,
    })


def feature_rows(n: int, rng: np.random.Generator) -> pa.Table:
    density = 10 ** rng.uniform(-6, -1, n)
    n_tokens = np.full(n, 10_000_000, dtype=np.int64)
    return pa.table({
        "dictionary_id": pa.array(np.full(n, "sae-l6", dtype=object)),
        "feature": pa.array(np.arange(n, dtype=np.int32)),
        "corpus_id": pa.array(np.full(n, "corpus-a", dtype=object)),
        "n_tokens": pa.array(n_tokens),
        "fire_count": pa.array((density * n_tokens).astype(np.int64)),
        "density": pa.array(density),
        "max_activation": pa.array(rng.gamma(2.0, 3.0, n)),
        "mean_activation": pa.array(rng.gamma(2.0, 1.0, n)),
    })


def ingest(rows: int, chunk: int, folder: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    chunks = [(s, min(chunk, rows - s)) for s in range(0, rows, chunk)]
    times = {"featurelens": 0.0, "duckdb_raw": 0.0, "duckdb_pk": 0.0, "parquet": 0.0}
    raw = duckdb.connect(str(folder / "raw.duckdb"))
    keyed = duckdb.connect(str(folder / "keyed.duckdb"))
    with featurelens.open_store(folder / "store.duckdb") as store:
        columns = store.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                "WHERE table_name = 'examples' ORDER BY column_index")
        definition = ", ".join(f"{c} {t}" for c, t in columns)
        raw.execute(f"CREATE TABLE examples ({definition})")
        keyed.execute(f"CREATE TABLE examples ({definition}, "
                      "PRIMARY KEY (dictionary_id, feature, kind, rank))")
        writer = None
        for start, n in tqdm(chunks, desc="ingest (4 ways)", unit="chunk", file=sys.stderr):
            table = example_chunk(start, n, rng)
            t0 = time.perf_counter()
            store.insert("examples", table)
            times["featurelens"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            raw.register("incoming", table)
            raw.execute("INSERT INTO examples BY NAME SELECT * FROM incoming")
            raw.unregister("incoming")
            times["duckdb_raw"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            keyed.register("incoming", table)
            keyed.execute("INSERT INTO examples BY NAME SELECT * FROM incoming")
            keyed.unregister("incoming")
            times["duckdb_pk"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if writer is None:
                writer = pq.ParquetWriter(folder / "examples.parquet", table.schema)
            writer.write_table(table)
            times["parquet"] += time.perf_counter() - t0
        writer.close()
        stored = store.sql("SELECT count(*) AS n FROM examples")["n"][0]
    raw.close()
    keyed.close()
    assert stored == rows, (stored, rows)
    return {k: rows / v for k, v in times.items()}


def query(features: int, folder: Path, repeats: int = 7) -> dict[str, float]:
    table = feature_rows(features, np.random.default_rng(1))
    path = folder / "features.duckdb"
    with featurelens.open_store(path) as store:
        store.insert("features", table)

    def median_ms(fn) -> float:
        fn()  # warm
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples)

    with featurelens.open_store(path, read_only=True) as store:
        ours = median_ms(lambda: store.sql(QUERY))
        expected = store.sql(QUERY)
    bare = duckdb.connect(str(path), read_only=True)
    raw = median_ms(lambda: bare.execute(QUERY).fetchall())
    bare.close()
    frame = pl.from_arrow(table)
    lazy = lambda: (frame.lazy()  # noqa: E731
                    .filter((pl.col("dictionary_id") == "sae-l6") & pl.col("density").is_between(1e-4, 1e-2)
                            & (pl.col("max_activation") > 5))
                    .sort("max_activation", descending=True).head(100)
                    .select("feature", "density", "max_activation", "fire_count").collect())
    assert lazy()["feature"].to_list() == expected["feature"].to_list()
    return {"featurelens": ours, "duckdb_raw": raw, "polars_memory": median_ms(lazy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=float, default=10e6, help="example rows to ingest")
    parser.add_argument("--features", type=float, default=1e6, help="feature rows to query")
    parser.add_argument("--chunk", type=float, default=1e6, help="rows per insert")
    args = parser.parse_args()
    rows, features, chunk = int(args.rows), int(args.features), int(args.chunk)
    with tempfile.TemporaryDirectory(prefix="featurelens-bench-") as tmp:
        rates = ingest(rows, chunk, Path(tmp))
        print(f"ingest {rows:,} example rows ({WINDOW}-token windows), {chunk:,} per transaction")
        print(f"  featurelens Store.insert : {rates['featurelens']:>12,.0f} rows/s")
        print(f"  DuckDB raw INSERT        : {rates['duckdb_raw']:>12,.0f} rows/s (no PK, no transaction)")
        print(f"  DuckDB raw INSERT, same PK: {rates['duckdb_pk']:>11,.0f} rows/s")
        print(f"  Parquet write (pyarrow)  : {rates['parquet']:>12,.0f} rows/s")
        print(f"  ratio featurelens / DuckDB raw = {rates['featurelens'] / rates['duckdb_raw']:.2f}")
        print(f"  ratio featurelens / DuckDB raw with the same PK = "
              f"{rates['featurelens'] / rates['duckdb_pk']:.2f}")
        print(f"  ratio featurelens / Parquet    = {rates['featurelens'] / rates['parquet']:.2f}")
        ms = query(features, Path(tmp))
        print(f"query over {features:,} features (filter + top-100 by max_activation), median ms")
        print(f"  featurelens open_store().sql -> polars : {ms['featurelens']:8.2f} ms")
        print(f"  bare DuckDB fetchall                   : {ms['duckdb_raw']:8.2f} ms")
        print(f"  polars on an in-memory frame           : {ms['polars_memory']:8.2f} ms")
        print(f"  ratio bare DuckDB / featurelens = {ms['duckdb_raw'] / ms['featurelens']:.2f}")
        print(f"  ratio polars in-memory / featurelens = {ms['polars_memory'] / ms['featurelens']:.2f}")


if __name__ == "__main__":
    main()
