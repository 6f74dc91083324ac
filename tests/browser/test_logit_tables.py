"""Logit tables written straight to HTML against the template macro they replace (kept
here only, rendered by the browser's autoescaping Jinja environment), on hostile tokens,
missing and NaN values and lists of unequal length."""

from __future__ import annotations

import math
import random

import pytest

from featurelens.browser.logit_tables import logit_table
from featurelens.browser.templating import ENV

MACRO = """\
{% macro logits(title, tokens, values, cls) -%}
<div class="logits {{ cls }}"><h3>{{ title }}</h3>
{%- if not tokens -%}<p class="empty">none stored</p>
{%- else -%}<table>{% for t, v in zip(tokens, values or []) %}<tr><td><code>{{ t|display }}</code></td><td class="num">{{ v|fmt }}</td></tr>{% endfor %}</table>
{%- endif -%}
</div>
{%- endmacro %}{{ logits(title, tokens, values, cls) }}"""

TOKENS = ["the", " cat", "\n", "\t<b>", "&amp;", '"q"', "'", "", "\r\n", "☃", "<script>"]


@pytest.mark.parametrize("seed", range(4))
def test_tables_are_the_macros_bytes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        tokens = rng.choice([None, [], [rng.choice(TOKENS) for _ in range(rng.randint(1, 12))]])
        n = len(tokens or [])
        values = rng.choice([None, [rng.choice([0.5, -3.25, 1e-9, 12345.678, math.nan, None, 7])
                                    for _ in range(max(0, n - rng.randint(0, 2)))]])
        title, cls = rng.choice([("promoted", "pos"), ("gained when ablated", "neg"), ('<"x">', "a&b")])
        expected = ENV.from_string(MACRO).render(title=title, tokens=tokens, values=values, cls=cls)
        assert str(logit_table(title, tokens, values, cls)) == expected
