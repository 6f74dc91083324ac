"""Windows cut as they are read keep exactly what ``crop`` keeps of the whole window, for
any activation list: ties, signed zeros, NaN, infinities, lists longer or shorter than
their tokens, empty and null lists, sliced and multiple Arrow chunks."""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest

from featurelens.core.host.protocols import Example
from featurelens.core.selection import float_lists
from featurelens.core.window_cut import kept_spans
from featurelens.llm.window_text import crop

ODD = [0.0, -0.0, 1.0, 1.0, 2.5, -3.0, math.inf, -math.inf, 1e-30, 3.4028234663852886e38]


def random_rows(rng: random.Random, n_rows: int, with_nan: bool) -> list[list[float] | None]:
    rows: list[list[float] | None] = []
    for _ in range(n_rows):
        if rng.random() < 0.05:
            rows.append(None)
            continue
        length = rng.choice([0, 1, 2, 7, 31, 32, 33, 64, 80])
        pool = ODD + ([math.nan] if with_nan else [])
        if rng.random() < 0.3:  # mostly silent, as random windows are
            rows.append([0.0] * length)
        else:
            rows.append([rng.choice(pool) if rng.random() < 0.3 else round(rng.uniform(-1, 4), 1)
                         for _ in range(length)])
    return rows


def expected(row: list[float] | None, count: int, width: int) -> tuple[list[str], list[float]]:
    """What reading the whole window, cutting it to its tokens, then ``crop`` gives."""
    values = row or []
    n = min(len(values), count)
    window = crop(Example([str(i) for i in range(n)], values[:n], "top"), width)
    return window.tokens, window.activations


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("width", [0, 1, 2, 5, 32])
def test_spans_and_values_are_what_crop_keeps(seed, width):
    rng = random.Random(seed * 31 + width)
    rows = random_rows(rng, 300, with_nan=seed % 2 == 1)
    value_type = pa.list_(pa.float32() if seed < 3 else pa.float64())
    array = pa.array([row or [] for row in rows[:250]], value_type)  # numpy reads chunks without nulls
    with_nulls = pa.array([*rows[250:], None], value_type)  # Arrow reads this one
    assert with_nulls.null_count
    column = pa.chunked_array([array.slice(0, 120), array.slice(120, 1), array.slice(121), with_nulls])
    rows = column.to_pylist()  # as stored (float32 rounding included)
    counts = [rng.choice([0, 5, 31, 32, 40, 64, 100]) for _ in rows]
    spans = kept_spans(column, counts, width)
    values = float_lists(column, spans)
    for row, count, (start, stop), kept in zip(rows, counts, spans, values):
        tokens, activations = expected(row, count, width)
        assert [str(i) for i in range(start, stop)] == tokens, (row, count, width)
        assert same(kept or [], activations), (row, count, width)


def test_null_values_are_kept_as_arrow_reads_them_and_such_a_row_is_never_cut():
    column = pa.chunked_array([pa.array([[1.0, None, 2.0], None, [3.0], [0.0, 5.0, 1.0, 0.0]],
                                        pa.list_(pa.float32()))])
    assert kept_spans(column, [3, 0, 1, 4], 0) == [(0, 3), (0, 0), (0, 1), (0, 4)]
    spans = kept_spans(column, [3, 0, 1, 4], 2)
    assert spans == [(0, 3), (0, 0), (0, 1), (0, 2)]  # the row with a null stays whole for crop to meet
    assert float_lists(column, spans) == [[1.0, None, 2.0], None, [3.0], [0.0, 5.0]]


def test_a_store_with_null_activations_fails_those_features_alone(tmp_path):
    """A null among a window's activations makes its feature a failure, as it did before
    windows were cut as read; the stage goes on and scores every other feature."""
    from synthetic_store import fill_store

    import featurelens
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import ScoreSpec, score_features

    with featurelens.open_store(tmp_path / "s.duckdb") as store:
        fill_store(store, n_features=30, seq_len=40)
        store.execute("UPDATE examples SET activations = list_transform(activations, lambda x: "
                      "CASE WHEN x > 0.3 THEN NULL ELSE x END) WHERE feature % 3 = 1")
        broken = {f for (f,) in store.execute("SELECT DISTINCT feature FROM examples WHERE "
                                              "list_count(activations) < len(activations)")}
        stats = score_features(store, ScoreSpec("offline:none", "token-check"),
                               settings=EngineSettings(progress=False))
        failed = {f for (f,) in store.execute("SELECT DISTINCT feature FROM failures")}
        scored = {f for (f,) in store.execute("SELECT DISTINCT feature FROM scores WHERE scorer = 'token-check'")}
        fired = {f for (f,) in store.execute("SELECT feature FROM features WHERE fire_count > 0")}
    assert len(broken) >= 5 and failed == broken and stats.failed >= len(broken)
    assert scored == fired - broken and stats.succeeded >= len(scored)


def test_a_list_longer_than_its_tokens_is_cut_to_them_before_its_peak_is_found():
    column = pa.chunked_array([pa.array([[0.0, 1.0, 2.0, 0.5, 9.0, 9.0]], pa.list_(pa.float32()))])
    assert kept_spans(column, [4], 2) == [(1, 3)]  # the peak among 4 tokens is 2.0 at 2, not 9.0
    assert float_lists(column, kept_spans(column, [4], 2)) == [[1.0, 2.0]]


def test_records_read_cut_are_the_whole_records_cropped_and_score_the_same(tmp_path):
    """Through the store: a scorer that declares its width reads exactly the windows it
    would cut itself, so its scores do not change."""
    from synthetic_store import fill_store

    import featurelens
    from featurelens.core.host.protocols import example_width
    from featurelens.core.selection import Selection, stream_records
    from featurelens.scorers.token_check import TokenCheckScorer

    scorer = TokenCheckScorer(n_activating=4, n_random=3, window=6)
    assert example_width(scorer) == 6
    with featurelens.open_store(tmp_path / "s.duckdb") as store:
        fill_store(store, n_features=60, seq_len=16)
        kinds = scorer.example_kinds()
        whole = [r for page in stream_records(store, Selection(), 16, kinds) for r in page]
        cut = [r for page in stream_records(store, Selection(), 16, kinds, width=6) for r in page]
    assert [r.feature for r in cut] == [r.feature for r in whole] and len(whole) == 60
    assert any(len(e.tokens) > 6 for r in whole for e in r.examples)
    for a, b in zip(whole, cut):
        assert b.examples == [crop(e, 6) for e in a.examples]
        label = '"' + a.examples[0].tokens[0] + '"' if a.examples else '" cat"'
        assert scorer.score(b, label, []) == scorer.score(a, label, [])
