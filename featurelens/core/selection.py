"""Stream :class:`FeatureRecord` objects out of the store, a chunk of features at a time.

Labeling a million features must not hold a million records: features are selected
with keyset pagination (ordered by dictionary and index, resuming after the last key
seen), and each page's examples are loaded joined to their sequences' token strings in
one query. Memory is bounded by the chunk size, not by the selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Iterator, Mapping

import duckdb
import numpy as np
import pyarrow as pa

from featurelens.core.batched import batched
from featurelens.core.errors import FeaturelensError, StoreError
from featurelens.core.gc_pause import gc_paused
from featurelens.core.host.protocols import Example, FeatureRecord
from featurelens.core.store.database import Store
from featurelens.core.window_cut import kept_spans, ranges


@dataclass(frozen=True)
class Selection:
    """Which features to work on: a SQL condition over ``features``, a dictionary, a cap."""

    where: str | None = None
    dictionary_id: str | None = None
    limit: int | None = None

    def condition(self) -> tuple[str, list[object]]:
        parts, params = ["TRUE"], []
        if self.where:
            _one_expression(self.where)
            parts.append(f"({self.where})")
        if self.dictionary_id:
            parts.append("dictionary_id = ?")
            params.append(self.dictionary_id)
        return " AND ".join(parts), params


def _one_expression(where: str) -> None:
    """Refuse a condition that smuggles in more statements (``x > 0; DROP TABLE ...``)."""
    try:
        statements = duckdb.extract_statements(f"SELECT 1 FROM features WHERE ({where})")
    except duckdb.Error as error:
        raise FeaturelensError(f"The --where condition {where!r} cannot be parsed ({error}); "
                               "write one SQL condition over the features table.") from None
    if len(statements) != 1:
        raise FeaturelensError(f"The --where condition {where!r} holds more than one SQL "
                               "statement; write a single condition, e.g. \"density > 0.001\".")


def count_features(store: Store, selection: Selection) -> int:
    """How many features the selection holds (after ``limit``); checks the condition."""
    condition, params = selection.condition()
    if selection.dictionary_id:
        known = store.execute("SELECT count(*) FROM dictionaries WHERE dictionary_id = ?",
                              [selection.dictionary_id])[0][0]
        has_features = store.execute("SELECT count(*) FROM features WHERE dictionary_id = ?",
                                     [selection.dictionary_id])[0][0]
        if not known and not has_features:
            raise FeaturelensError(
                f"The store has no dictionary {selection.dictionary_id!r}; list them with "
                "featurelens sql \"SELECT dictionary_id FROM dictionaries\".")
    try:
        total = store.execute(f"SELECT count(*) FROM features WHERE {condition}", params)[0][0]
    except StoreError as error:
        raise FeaturelensError(
            f"The --where condition {selection.where!r} is not valid SQL over the features "
            f"table ({error}); use its columns, e.g. \"density > 0.001 AND feature < 100\"."
        ) from None
    return min(total, selection.limit) if selection.limit is not None else total


def feature_keys(store: Store, selection: Selection, chunk_size: int = 256) -> Iterator[list[tuple[str, int]]]:
    """Pages of ``(dictionary_id, feature)`` in a stable order, at most ``limit`` in all.

    Keys are read one dictionary at a time with ``feature > last``: a plain range condition
    DuckDB prunes row groups by, so a page costs the same at feature 1,000,000 as at 0
    (a condition spanning dictionaries, ``d > ? OR (d = ? AND f > ?)``, would scan its way
    through the table on every page). A page may still hold the end of one dictionary and
    the start of the next."""
    yield from batched(_keys(store, selection, chunk_size), chunk_size)


def _keys(store: Store, selection: Selection, chunk_size: int) -> Iterator[tuple[str, int]]:
    condition, params = selection.condition()
    remaining = selection.limit
    dictionaries = [str(d) for (d,) in store.execute(
        f"SELECT DISTINCT dictionary_id FROM features WHERE {condition} ORDER BY 1", params)]
    for dictionary_id in dictionaries:
        last = -1
        while remaining is None or remaining > 0:
            size = chunk_size if remaining is None else min(chunk_size, remaining)
            rows = store.execute(
                f"SELECT feature FROM features WHERE {condition} AND dictionary_id = ? AND feature > ? "
                f"ORDER BY feature LIMIT {int(size)}", params + [dictionary_id, last])
            if not rows:
                break
            for (feature,) in rows:
                yield dictionary_id, int(feature)
            last = int(rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)


def _kinds_condition(kinds: Mapping[str, int | None] | None) -> tuple[str, list[object]]:
    if kinds is None:
        return "TRUE", []
    if not kinds:
        return "FALSE", []
    parts, params = [], []
    for kind, most in sorted(kinds.items()):
        if most is None:
            parts.append("e.kind = ?")
            params.append(kind)
        else:
            parts.append("(e.kind = ? AND e.rank < ?)")
            params += [kind, int(most)]
    return "(" + " OR ".join(parts) + ")", params


class SequenceTokens:
    """Each sequence's token strings, for the examples of one stream of records.

    The first chunks read only the sequences their examples point at (a join); a long
    stream then reads the corpus's token strings once, as Arrow, and converts each sequence
    to Python once (one shared ``str`` per distinct token), so a chunk costs what it uses
    rather than a scan of ``sequences``. Memory is bounded by the corpus (a few bytes a
    token), not by the number of features.
    """

    #: Chunks answered by a join before the whole table is read once.
    JOINED_CHUNKS = 2

    def __init__(self) -> None:
        self.calls = 0
        self.table: pa.Table | None = None
        self.rows: dict[tuple[str, int], int] = {}
        self.lists: dict[tuple[str, int], list[str]] = {}  #: converted once, strings shared
        self.strings: dict[str, str] = {}  #: one str object per distinct token string

    def _load(self, store: Store) -> None:
        self.table = store.con.sql("SELECT corpus_id, sequence_id, token_strs FROM sequences").to_arrow_table()
        self.rows = {key: i for i, key in enumerate(zip(self.table.column("corpus_id").to_pylist(),
                                                         self.table.column("sequence_id").to_pylist()))}

    def get(self, store: Store, examples: pa.Table) -> dict[tuple[str, int], list[str]]:
        """``(corpus_id, sequence_id) -> token strings`` of the sequences ``examples`` use."""
        return self.convert(self.table_for(store, examples))

    def table_for(self, store: Store, examples: pa.Table) -> pa.Table:
        """The rows of ``sequences`` (``corpus_id, sequence_id, token_strs``) that ``examples``
        use, as Arrow, for a process that builds the records itself (:func:`build_records`)."""
        self.calls += 1
        pairs = examples.select(["corpus_id", "sequence_id"])
        if self.table is None and self.calls > self.JOINED_CHUNKS:
            self._load(store)
        if self.table is None:
            return self._joined(store, pairs)
        rows = [self.rows[key] for key in _pairs(pairs) if key in self.rows]
        return self.table.take(pa.array(rows, pa.int64()))

    def convert(self, sequences: pa.Table) -> dict[tuple[str, int], list[str]]:
        """``(corpus_id, sequence_id) -> token strings`` of a :meth:`table_for` table, each
        sequence converted to Python once per stream (its strings shared)."""
        keys = list(zip(sequences.column("corpus_id").to_pylist(), sequences.column("sequence_id").to_pylist()))
        new = {key: i for i, key in enumerate(keys) if key not in self.lists}  # a row a key
        if new:
            strs = sequences.column("token_strs").take(pa.array(list(new.values()), pa.int64())).to_pylist()
            self._keep(list(new), strs)
        return {key: self.lists[key] for key in keys}

    def _keep(self, keys: list[tuple[str, int]], token_strs: list[list[str]]) -> None:
        shared = self.strings.setdefault
        for key, strs in zip(keys, token_strs):
            self.lists[key] = [shared(t, t) for t in strs]

    @staticmethod
    def _joined(store: Store, pairs: pa.Table) -> pa.Table:
        store.con.register("_record_seqs", pairs)
        try:
            return store.con.sql(
                "SELECT s.corpus_id, s.sequence_id, s.token_strs FROM sequences s "
                "JOIN (SELECT DISTINCT corpus_id, sequence_id FROM _record_seqs) w "
                "USING (corpus_id, sequence_id)").to_arrow_table()
        finally:
            store.con.unregister("_record_seqs")


def _pairs(table: pa.Table) -> list[tuple[str, int]]:
    """The distinct ``(corpus_id, sequence_id)`` of ``table``, in order of first appearance."""
    return list(dict.fromkeys(zip(table.column("corpus_id").to_pylist(), table.column("sequence_id").to_pylist())))


def float_lists(column: pa.ChunkedArray, spans: list[tuple[int, int]] | None = None) -> list[list[float] | None]:
    """A list-of-floats column as Python lists, the same values ``to_pylist`` gives;
    with ``spans``, only each row's ``values[start:stop]`` (:func:`~featurelens.core.window_cut.kept_spans`).

    The kept values go through numpy in one call (an order of magnitude cheaper than
    Arrow's per-element conversion, which dominated reading records) and are cut at the
    list bounds; a chunk holding a null list or a null value is converted by Arrow.
    """
    out: list[list[float] | None] = []
    row = 0
    for chunk in column.chunks:
        rows = len(chunk)
        kept = spans[row:row + rows] if spans is not None else None
        row += rows
        values = chunk.flatten()
        if chunk.null_count or values.null_count:
            lists = chunk.to_pylist()
            out += lists if kept is None else [v if v is None else v[a:b] for v, (a, b) in zip(lists, kept)]
            continue
        offsets = chunk.offsets.to_numpy()
        bounds = offsets - offsets[0]
        flat = values.to_numpy(zero_copy_only=False)
        if kept is None:
            cuts = bounds.tolist()
        else:  # gather the kept values only
            starts, stops = np.array(kept, dtype=np.int64).reshape(-1, 2).T
            flat = flat[ranges(bounds[:-1] + starts, stops - starts)]
            cuts = [0, *np.cumsum(stops - starts).tolist()]
        listed = flat.tolist()
        out += [listed[a:b] for a, b in zip(cuts, cuts[1:])]
    return out


Fallbacks = Mapping[str, Mapping[str, int | None]]


def load_records(store: Store, keys: list[tuple[str, int]],
                 kinds: Mapping[str, int | None] | None = None,
                 tokens: SequenceTokens | None = None,
                 fallbacks: Fallbacks | None = None, width: int | None = None) -> list[FeatureRecord]:
    """The records of ``keys`` (in that order), examples ordered by kind then rank.

    ``kinds`` limits the examples loaded (``{"top": 10}``: the ten first top windows and
    nothing else; ``None`` as a count: all of that kind): an explainer reading 10 of a
    feature's 150 stored windows should not pay to convert the other 140.
    ``fallbacks`` (``{"quantile": {"top": 60}}``) loads more windows only for the features
    that got none of a kind: a scorer that tests on top windows when a feature has no
    quantile ones does not read them for every feature that has.
    ``width`` cuts every longer window to that many tokens around its first peak, as
    :func:`featurelens.llm.window_text.crop` would (a scorer that looks at 32 tokens of
    each window says so, and the other values are never converted to Python).

    Both queries are bounded by the keys' feature range as well as joined to them, so
    DuckDB skips the row groups of other features: a chunk reads its own features' rows,
    not the whole table, and a stream of chunks stays linear in the dictionary's width.
    Columns come back as Arrow (far cheaper than row tuples for list columns), and each
    sequence's token strings are converted to Python once per chunk, not once per example.
    """
    if not keys:
        return []
    features, examples = _tables(store, keys, kinds, fallbacks)
    with gc_paused():  # millions of acyclic objects: see core/gc_pause
        return _build(keys, features.to_pydict(), examples, (tokens or SequenceTokens()).get(store, examples),
                      width)


@dataclass(frozen=True)
class RecordTables:
    """What :func:`load_records` reads for a page of keys, still as Arrow: a process without
    the store (an offline labeling worker) builds the same records from it with
    :func:`build_records`."""

    features: pa.Table
    examples: pa.Table
    sequences: pa.Table  #: ``corpus_id, sequence_id, token_strs`` of the sequences the examples use


def fetch_tables(store: Store, keys: list[tuple[str, int]],
                 kinds: Mapping[str, int | None] | None = None,
                 tokens: SequenceTokens | None = None,
                 fallbacks: Fallbacks | None = None) -> RecordTables:
    """The tables :func:`load_records` would build ``keys``' records from (same queries)."""
    features, examples = _tables(store, keys, kinds, fallbacks)
    return RecordTables(features, examples, (tokens or SequenceTokens()).table_for(store, examples))


def build_records(keys: list[tuple[str, int]], tables: RecordTables, tokens: SequenceTokens,
                  width: int | None = None) -> list[FeatureRecord]:
    """The records :func:`load_records` returns for ``keys``, from their :func:`fetch_tables`
    (``tokens`` converts each sequence once for a whole stream of pages)."""
    if not keys:
        return []
    with gc_paused():
        return _build(keys, tables.features.to_pydict(), tables.examples, tokens.convert(tables.sequences), width)


def _tables(store: Store, keys: list[tuple[str, int]], kinds: Mapping[str, int | None] | None,
            fallbacks: Fallbacks | None) -> tuple[pa.Table, pa.Table]:
    """The features' rows and their examples (fallback windows included), as Arrow."""
    view = "_record_keys"
    numbers = [k[1] for k in keys]
    low, high = min(numbers), max(numbers)
    store.con.register(view, pa.table({"dictionary_id": [k[0] for k in keys],
                                       "feature": pa.array(numbers, pa.int32())}))
    try:
        features = store.con.sql(
            f"SELECT f.dictionary_id, f.feature, f.max_activation, f.density, f.top_logits, "
            f"f.bottom_logits FROM features f JOIN {view} k USING (dictionary_id, feature) "
            f"WHERE f.feature BETWEEN {int(low)} AND {int(high)}"
        ).to_arrow_table()
        examples = _examples(store, view, low, high, kinds)
    finally:
        store.con.unregister(view)
    if fallbacks and kinds is not None:
        examples = _with_fallbacks(store, examples, keys, kinds, fallbacks)
    return features, examples


def _build(keys: list[tuple[str, int]], features: dict[str, list], examples: pa.Table,
           token_strs_of: dict[tuple[str, int], list[str]], width: int | None = None) -> list[FeatureRecord]:
    """The records of ``keys`` from their features' rows and their examples, each example
    as many tokens as activations (the shorter cut), then cut to ``width`` (see ``load_records``)."""
    by_key: dict[tuple[str, int], FeatureRecord] = {}
    for dictionary_id, feature, max_act, density, top, bottom in zip(
            features["dictionary_id"], features["feature"], features["max_activation"],
            features["density"], features["top_logits"], features["bottom_logits"]):
        by_key[(dictionary_id, feature)] = FeatureRecord(
            dictionary_id, int(feature), float(max_act or 0.0), float(density),
            [], list(top or []), list(bottom or []))
    columns = examples.select(["dictionary_id", "feature", "kind", "quantile", "corpus_id",
                               "sequence_id"]).to_pydict()
    token_lists = [token_strs_of.get(key) for key in zip(columns["corpus_id"], columns["sequence_id"])]
    column = examples.column("activations")
    spans = kept_spans(column, [len(t) if t is not None else 0 for t in token_lists], width) if width else None
    for dictionary_id, feature, kind, activations, quantile, token_strs, span in zip(
            columns["dictionary_id"], columns["feature"], columns["kind"], float_lists(column, spans),
            columns["quantile"], token_lists, spans or repeat(None)):
        record = by_key.get((dictionary_id, feature))
        if record is None or token_strs is None:
            continue
        if span is not None:  # cut as it was read
            tokens = token_strs[span[0]:span[1]]
        else:  # whole: as many tokens as activations, the longer cut (each row's list is its own)
            n = min(len(activations or ()), len(token_strs))
            tokens = token_strs[:n]
            if activations is not None and n < len(activations):
                activations = activations[:n]
        record.examples.append(Example(tokens, activations or [], kind, quantile))
    return [by_key[k] for k in keys if k in by_key]


def _examples(store: Store, view: str, low: int, high: int,
              kinds: Mapping[str, int | None] | None) -> pa.Table:
    """The examples of the features registered as ``view`` (within ``low``..``high``) of
    ``kinds``, ordered by dictionary, feature, kind and rank."""
    condition, params = _kinds_condition(kinds)
    return store.con.sql(
        f"SELECT e.dictionary_id, e.feature, e.kind, e.activations, e.quantile, e.corpus_id, "
        f"e.sequence_id, e.rank FROM examples e JOIN {view} k USING (dictionary_id, feature) "
        f"WHERE e.feature BETWEEN {int(low)} AND {int(high)} AND {condition} "
        f"ORDER BY e.dictionary_id, e.feature, e.kind, e.rank",
        params=params or None).to_arrow_table()


def _with_fallbacks(store: Store, examples: pa.Table, keys: list[tuple[str, int]],
                    kinds: Mapping[str, int | None], fallbacks: Fallbacks) -> pa.Table:
    """``examples`` plus, for each key that has no example of a kind ``fallbacks`` names,
    the windows those lacking kinds fall back to (one more query per distinct set of them,
    none at all for a chunk where every feature has every such kind)."""
    import pyarrow.compute as pc

    wanted: dict[tuple[str, int], dict[str, int | None]] = {}
    for kind, instead in fallbacks.items():
        if kind not in kinds:
            continue
        rows = examples.filter(pc.equal(examples.column("kind"), kind))
        have = set(zip(rows.column("dictionary_id").to_pylist(), rows.column("feature").to_pylist()))
        for key in keys:
            if key in have:
                continue
            merged = wanted.setdefault(key, {})
            for other, most in instead.items():
                if other in kinds:
                    continue  # loaded already
                known = merged.get(other, 0)
                merged[other] = None if most is None or known is None else max(most, known)
    groups: dict[tuple[tuple[str, int | None], ...], list[tuple[str, int]]] = {}
    for key in keys:
        if wanted.get(key):
            groups.setdefault(tuple(sorted(wanted[key].items())), []).append(key)
    tables = [examples]
    for extra, members in groups.items():
        view = "_fallback_keys"
        numbers = [k[1] for k in members]
        store.con.register(view, pa.table({"dictionary_id": [k[0] for k in members],
                                           "feature": pa.array(numbers, pa.int32())}))
        try:
            tables.append(_examples(store, view, min(numbers), max(numbers), dict(extra)).cast(examples.schema))
        finally:
            store.con.unregister(view)
    if sum(t.num_rows for t in tables[1:]) == 0:
        return examples
    return pa.concat_tables(tables).sort_by([("dictionary_id", "ascending"), ("feature", "ascending"),
                                             ("kind", "ascending"), ("rank", "ascending")])


def stream_records(store: Store, selection: Selection, chunk_size: int = 256,
                   kinds: Mapping[str, int | None] | None = None,
                   fallbacks: Fallbacks | None = None, width: int | None = None) -> Iterator[list[FeatureRecord]]:
    """Chunks of records for the whole selection; memory bounded by ``chunk_size`` (and the
    corpus's token strings, read once for a long stream: :class:`SequenceTokens`).
    ``fallbacks``, ``width``: see :func:`load_records`."""
    tokens = SequenceTokens()
    for page in feature_keys(store, selection, chunk_size):
        yield load_records(store, page, kinds, tokens, fallbacks, width)
