"""Unlit tokens of an example window are drawn as one run of text between lit tokens."""

from __future__ import annotations

from featurelens.browser.render_feature import window_tokens
from featurelens.browser.token_runs import merge_unlit


def test_runs_merge_between_lit_and_special_tokens() -> None:
    tokens = window_tokens(["<s>", " a", " b", "\n", " hit", " c", "", " d", "<s>", " e"],
                           [0, 0, 0, 0, 4.0, 0, 0, 0, 0, 0], scale=4.0, special={"<s>"}, show_special=True)
    merged = merge_unlit(tokens)
    assert [(t["text"], t["rgb"] is not None, t["special"]) for t in merged] == [
        ("<s>", False, True), (" a b↵", False, False), (" hit", True, False), (" c d", False, False),
        ("<s>", False, True), (" e", False, False)]
    assert merged[2]["value"] == 4.0 and merged[2]["rgb"] == (255, 140, 0)
    assert "".join(t["text"] for t in merged) == "".join(t["text"] for t in tokens)


def test_hidden_specials_do_not_split_a_run() -> None:
    tokens = window_tokens(["<s>", " a", "<s>", " b"], [0, 0, 0, 0], scale=1.0, special={"<s>"})
    assert merge_unlit(tokens) == [{"text": " a b", "special": False, "rgb": None, "value": 0.0}]
    assert merge_unlit([]) == []
