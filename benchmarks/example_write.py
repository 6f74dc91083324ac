"""Writing features and examples at the end of extraction: the previous write against the current one.

Run: .venv/bin/python benchmarks/example_write.py [--features 65536] [--tokens 4096] [--k 32] [--current-only]

One real ``ExtractionState`` of ``--features`` features is filled by feeding it random sparse
codes (``--k`` active features per token, ``--tokens`` tokens in windows of 64), so each
feature keeps a few windows, as in a wide dictionary (the defaults give about 2 top and 2
quantile rows per feature beside its 50 random ones, the mix of the 1,048,576-feature run).
Then every feature's row and examples are written twice, each time into a fresh store,
``extractor.FEATURE_CHUNK`` features a transaction under the same DuckDB memory limit, as the
final phase of ``extract`` writes them:

- previous: the examples table keyed by its primary key (what stores had before migration
  0016), rows built as before (a Python string per row for the constant columns, all K slots'
  activations gathered before the empty ones are dropped), three inserts a chunk;
- current: ``extractor.write_rows``, the function extraction's final phase calls (no key, one
  insert a chunk, constant columns as one-entry dictionary arrays, only occupied slots
  gathered, one torch and one DuckDB thread).

Printed for each: wall seconds, CPU seconds of the process (all threads, DuckDB's included),
features/s by wall and by CPU, the store's size; then the ratio of the two (same run, same
state), a check that both stores hold exactly the same examples, and the median time of one
feature's example query (the browser's) in each store. The load average is printed with it:
on shared cores compare the CPU figures. ``--current-only`` times the current write alone
(at a million features the previous one takes about ten minutes of CPU more).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import featurelens  # noqa: E402
from featurelens.core.dictionaries.base import SparseActs  # noqa: E402
from featurelens.core.extraction import extractor  # noqa: E402
from featurelens.core.extraction.quantile_sampling import quantile_bins  # noqa: E402
from featurelens.core.extraction.state import ExtractionState, Settings  # noqa: E402
from featurelens.core.extraction.writer import _fixed_lists  # noqa: E402

CONTEXT = 64
BATCH = 8


def filled_state(n_features: int, tokens: int, k: int) -> ExtractionState:
    """A state fed ``tokens`` tokens of random codes, ``k`` active features each."""
    generator = torch.Generator().manual_seed(0)
    state = ExtractionState(n_features, CONTEXT, Settings(), torch.device("cpu"))
    rows = BATCH * CONTEXT
    for batch in range(max(1, tokens // rows)):
        codes = [SparseActs(torch.rand(rows, k, generator=generator) + 0.01,
                            torch.randint(0, n_features, (rows, k), generator=generator))]
        state.accumulate(codes, BATCH, CONTEXT, torch.arange(batch * BATCH, (batch + 1) * BATCH),
                         torch.zeros(BATCH, CONTEXT, dtype=torch.bool))
    return state


def previous_example_rows(dictionary_id: str, corpus_id: str, kind: str, seq: torch.Tensor,
                          acts: torch.Tensor | int, order: torch.Tensor | None = None,
                          bins: torch.Tensor | None = None, first_feature: int = 0,
                          features: torch.Tensor | None = None) -> pa.Table:
    """The rows as the writer built them before (the baseline)."""
    if order is not None:
        seq = seq.gather(1, order)
        if isinstance(acts, torch.Tensor):
            acts = acts.gather(1, order[:, :, None].expand_as(acts))
    valid = seq >= 0
    rank = torch.cumsum(valid.long(), dim=1) - 1
    feature, slot = torch.nonzero(valid, as_tuple=True)
    n = feature.numel()
    if isinstance(acts, torch.Tensor):
        chosen = acts[feature, slot].float().numpy()
        maxima = torch.from_numpy(chosen).max(dim=1) if n else None
        max_value = (maxima.values if maxima else torch.zeros(0)).numpy()
        max_position = (maxima.indices.int() if maxima else torch.zeros(0, dtype=torch.int32)).numpy()
    else:
        chosen = np.zeros((n, acts), dtype=np.float32)
        at_zero = torch.zeros(1, acts).max(dim=1)
        max_value = np.full(n, float(at_zero.values[0]), dtype=np.float32)
        max_position = np.full(n, int(at_zero.indices[0]), dtype=np.int32)
    ids = feature + first_feature if features is None else features[feature]
    return pa.table({
        "dictionary_id": pa.array([dictionary_id] * n, pa.string()),
        "feature": pa.array(ids.int().numpy()),
        "kind": pa.array([kind] * n, pa.string()),
        "rank": pa.array(rank[feature, slot].int().numpy()),
        "corpus_id": pa.array([corpus_id] * n, pa.string()),
        "sequence_id": pa.array(seq[feature, slot].numpy()),
        "activations": _fixed_lists(chosen, pa.float32()),
        "max_activation": pa.array(max_value, pa.float32()),
        "max_position": pa.array(max_position, pa.int32()),
        "quantile": pa.array(bins[feature, slot].int().numpy() if bins is not None else [None] * n, pa.int32()),
    })


def previous_write_examples(db, dict_id: str, corpus_id: str, state: ExtractionState, first: int, last: int,
                            n_bins: int, n_random: int) -> None:
    """The examples as the writer wrote them before: three inserts a chunk."""
    top_features, top_seq, top_acts, top_order = state.top.ranked_live(first, last)
    db.insert("examples", previous_example_rows(dict_id, corpus_id, "top", top_seq, top_acts, top_order,
                                                features=top_features))
    res_features, res_seq, res_acts, _ = state.reservoir.ranked_live(first, last)
    order, bins = quantile_bins(res_acts.amax(dim=2), res_seq >= 0, n_bins, tiebreak=res_seq)
    db.insert("examples", previous_example_rows(dict_id, corpus_id, "quantile", res_seq, res_acts, order, bins,
                                                features=res_features))
    rand_seq, _ = state.pool.choose(first, last, n_random)
    db.insert("examples", previous_example_rows(dict_id, corpus_id, "random", rand_seq, state.context,
                                                first_feature=first))


def previous_write_rows(db, state: ExtractionState) -> None:
    """The final write as it was: same chunks and memory limit, DuckDB's and torch's own
    thread counts, the keyed table, :func:`previous_write_examples`."""
    n, settings = state.stats.fire_count.numel(), state.settings
    db.execute(f"SET memory_limit = '{extractor.WRITE_MEMORY}'")
    for first in range(0, n, extractor.FEATURE_CHUNK):
        last = min(first + extractor.FEATURE_CHUNK, n)
        with db.transaction():
            db.insert("features", extractor.feature_rows("d", "c", state.stats, extractor.QUANTILE_LEVELS,
                                                         None, None, first, last))
            previous_write_examples(db, "d", "c", state, first, last, settings.quantile_bins, settings.n_random)


def write(path: Path, state: ExtractionState, previous: bool) -> dict[str, float]:
    """Every feature's row and examples into a fresh store at ``path``; wall and CPU seconds."""
    with featurelens.open_store(path) as db:
        if previous:  # the key the examples table had before migration 0016
            db.execute("ALTER TABLE examples ADD PRIMARY KEY (dictionary_id, feature, kind, rank)")
        cpu, wall = time.process_time(), time.perf_counter()
        if previous:
            previous_write_rows(db, state)
        else:
            extractor.write_rows(db, "d", "c", state, None, None, progress=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"wall": wall, "cpu": cpu, "bytes": path.stat().st_size}


def fingerprint(path: Path) -> tuple:
    """Row count and an order-independent hash of every examples row."""
    with featurelens.open_store(path, read_only=True) as db:
        return tuple(db.execute(
            "SELECT count(*), sum(hash(dictionary_id, feature, kind, rank, corpus_id, sequence_id, activations, "
            "max_activation, max_position, quantile)::HUGEINT) FROM examples")[0])


def read_ms(path: Path, features: list[int]) -> float:
    """Median milliseconds of one feature's examples with their text (the browser's query)."""
    times = []
    with featurelens.open_store(path, read_only=True) as db:
        for feature in features:
            start = time.perf_counter()
            db.execute("SELECT x.kind, x.rank, x.activations, s.token_strs FROM examples x JOIN sequences s "
                       "ON s.corpus_id = x.corpus_id AND s.sequence_id = x.sequence_id "
                       "WHERE x.dictionary_id = ? AND x.feature = ? ORDER BY x.kind, x.rank", ["d", feature])
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=65_536)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--current-only", action="store_true")
    args = parser.parse_args()
    started = time.process_time()
    state = filled_state(args.features, args.tokens, args.k)
    for best in (state.top, state.reservoir):  # the pool's one-time sort, outside both timings
        best.ranked_live(0, 1)
    fired = int((state.stats.fire_count > 0).sum())
    print(f"state: {args.features:,} features ({fired:,} fired), {args.tokens:,} tokens, k={args.k}: "
          f"{time.process_time() - started:.1f} s CPU; load average {os.getloadavg()[0]:.1f}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, previous in (("previous", True), ("current", False))[1 if args.current_only else 0:]:
            path = Path(folder) / f"{name}.duckdb"
            results[name] = write(path, state, previous)
            r = results[name]
            print(f"{name:9s} wall {r['wall']:7.1f} s  CPU {r['cpu']:7.1f} s  "
                  f"{args.features / r['wall']:8,.0f} features/s (wall)  {args.features / r['cpu']:8,.0f} features/s (CPU)  "
                  f"store {r['bytes'] / 1e6:,.0f} MB  load {os.getloadavg()[0]:.1f}", flush=True)
        sample = random.Random(0).sample(range(args.features), min(50, args.features))
        reads = {name: read_ms(Path(folder) / f"{name}.duckdb", sample) for name in results}
        if args.current_only:
            print(f"one feature's examples read: {reads['current']:.1f} ms; peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
            return
        same = fingerprint(Path(folder) / "previous.duckdb") == fingerprint(Path(folder) / "current.duckdb")
    old, new = results["previous"], results["current"]
    print(f"current / previous speed: {old['wall'] / new['wall']:.2f}x by wall, {old['cpu'] / new['cpu']:.2f}x by CPU; "
          f"identical examples: {same}; one feature's examples read: {reads['previous']:.1f} ms keyed, "
          f"{reads['current']:.1f} ms now; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    if not same:
        raise SystemExit("the two writes stored different examples")


if __name__ == "__main__":
    main()
