"""window_keys(): a window's token keys, memoised by the whole window, equal to keying each token."""

from __future__ import annotations

import pytest

from featurelens.llm import token_labels
from featurelens.llm.token_labels import token_key, window_keys

WINDOWS = [
    [" The", " cat", "\n", " CAT", "<<", "", " "],
    [" the", " cat", "\t", " Cat", ">>", "\x00", "  "],
    ["Ünïcode", " 数据", " über", "ÜBER", "\r\n"],
    [],
]


@pytest.mark.parametrize("tokens", WINDOWS)
def test_the_keys_of_a_window_are_its_tokens_keys(tokens) -> None:
    assert window_keys(tokens) == tuple(token_key(t) for t in tokens)
    assert window_keys(tuple(tokens)) == window_keys(list(tokens))


def test_windows_that_differ_in_one_token_are_keyed_apart() -> None:
    first, second = [" a", " b", " c"], [" a", " b", " C."]
    assert window_keys(first)[2] == "c" and window_keys(second)[2] == "c."


def test_a_window_read_again_is_served_from_the_memo_and_the_memo_is_bounded() -> None:
    memo = token_labels._window_keys
    memo.cache_clear()
    window = [" x", " y"]
    window_keys(window)
    window_keys(list(window))
    assert memo.cache_info().hits == 1
    for i in range(token_labels.WINDOWS_KEPT + 10):
        window_keys([str(i)])
    assert memo.cache_info().currsize == token_labels.WINDOWS_KEPT
