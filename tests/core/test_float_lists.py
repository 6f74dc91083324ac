"""float_lists converts a list-of-floats column to exactly what Arrow's to_pylist gives."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from featurelens.core.selection import float_lists


@pytest.mark.parametrize("value_type", [pa.float32(), pa.float64()])
def test_matches_to_pylist_on_sliced_chunks_empty_lists_and_odd_values(value_type):
    rows = [[0.0, 1.5, -2.25], [], [3.4028234663852886e38, 1e-30], [0.1, 0.2, 0.3, 0.4], [7.0]]
    array = pa.array(rows, pa.list_(value_type))
    column = pa.chunked_array([array.slice(1, 3), array.slice(0, 1), array.slice(4)])
    assert float_lists(column) == column.to_pylist()
    assert [len(x) for x in float_lists(column)] == [0, 2, 4, 3, 1]


def test_null_lists_and_null_values_fall_back_to_arrow():
    column = pa.chunked_array([pa.array([[1.0, None], [2.0]], pa.list_(pa.float32())),
                               pa.array([None, [3.0, float("inf"), float("nan")]], pa.list_(pa.float32()))])
    out = float_lists(column)
    assert out[:3] == [[1.0, None], [2.0], None]
    assert out[3][:2] == [3.0, math.inf] and math.isnan(out[3][2])
