"""Garbage answers are parse failures, never explanations (issue 10, item 3)."""

from __future__ import annotations

import pytest

from featurelens.core.host.protocols import ParseError
from featurelens.labelers.explainers.parsing import parse_explanation

GARBAGE = [
    "\x00 lorem {{{ [[ not an answer",
    "Explanation: fine words\x07 then a bell",
    "Explanation: decoded badly \ufffd\ufffd",
    "Explanation: #@!$% ^&* ~~ ==",
    "Explanation: {{{{ }}}} [[[ ]]]",
    "Explanation: 42",
    "%%%% ::: ;;;",
]

GOOD = {
    "Explanation: closing brackets ) and ]": "closing brackets ) and ]",
    "Explanation: years (1984, 2001)": "years (1984, 2001)",
    "Explanation: C++ operators like ++ and --": "C++ operators like ++ and --",
    "Explanation: the word 'the'": "the word 'the'",
    "Explanation: Wörter über Flüsse": "Wörter über Flüsse",
    "Explanation: 数字と日付": "数字と日付",
}


@pytest.mark.parametrize("answer", GARBAGE)
def test_garbage_is_a_parse_error(answer: str) -> None:
    with pytest.raises(ParseError, match="not (text in the asked format|a phrase)"):
        parse_explanation(answer)


@pytest.mark.parametrize("answer,expected", sorted(GOOD.items()))
def test_real_explanations_still_parse(answer: str, expected: str) -> None:
    assert parse_explanation(answer) == expected
