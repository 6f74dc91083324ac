"""Example windows written straight to HTML against the template macros they replace.

The plain drawing lives here only: every token a dict (``window_tokens``), runs of unlit
tokens merged (``merge_unlit``), then the ``window`` and ``examples`` macros that
templates/feature.html used, rendered by the browser's Jinja environment. The direct
writer must give the same bytes on hostile windows.
"""

from __future__ import annotations

import math
import random
from typing import Any, Container

import pytest

from featurelens.browser import window_html
from featurelens.browser.special_tokens import SpecialTokens
from featurelens.browser.templating import ENV, display_token

MACROS = """\
{% macro window(tokens) -%}
{%- for t in tokens -%}
{%- if t.special -%}<span class="tok special" title="special token">{{ t.text }}</span>
{%- elif t.rgb -%}<span class="tok on" style="background:{{ '#%02x%02x%02x'|format(t.rgb[0], t.rgb[1], t.rgb[2]) }}" title="{{ '%.4g'|format(t.value) }}" data-act="{{ '%.6g'|format(t.value) }}">{{ t.text or zwsp }}</span>
{%- else -%}<span class="tok">{{ t.text or zwsp }}</span>
{%- endif -%}
{%- endfor -%}
{%- endmacro %}
{% macro examples(title, kind, rows) -%}
{%- if not rows -%}
<section class="examples {{ kind }}"><h2>{{ title }}</h2><p class="empty">none stored</p></section>
{%- else -%}
<section class="examples {{ kind }}" data-scale="{{ '%.6g'|format(scale) }}"><h2>{{ title }}</h2><ol>
{%- for row in rows -%}
<li class="example" data-kind="{{ kind }}" data-rank="{{ row.rank }}"><span class="label" title="{{ row.document or '' }}">{{ row.label }} max {{ row.max_activation|fmt }}</span><span class="window">{% if row.get("cut_before") %}<span class="cut" title="{{ row.cut_before }} earlier tokens not shown">…</span>{% endif %}{{ window(row.tokens) }}{% if row.get("cut_after") %}<span class="cut" title="{{ row.cut_after }} later tokens not shown">…</span>{% endif %}</span></li>
{%- endfor -%}
</ol></section>
{%- endif -%}
{%- endmacro %}
{{ examples(title, kind, rows) }}"""


def window_tokens(tokens: list[str], activations: list[Any], scale: float, special: Container[str],
                  show_special: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for token, act in zip(tokens, activations, strict=False):
        value = float(act or 0.0)
        if token in special:
            if show_special:
                out.append({"text": display_token(token), "special": True, "rgb": None, "value": value})
            continue
        rgb = window_html.highlight_rgb(value / scale) if value > 0 and scale > 0 else None
        out.append({"text": display_token(token), "special": False, "rgb": rgb, "value": value})
    return out


def merge_unlit(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for token in tokens:
        plain = token["rgb"] is None and not token["special"]
        if plain and out and out[-1]["rgb"] is None and not out[-1]["special"]:
            out[-1] = {**out[-1], "text": out[-1]["text"] + token["text"], "value": 0.0}
        else:
            out.append(token)
    return out


def plain_section(kind: str, rows: list[dict[str, Any]], scale: float, special: Container[str],
                  show_special: bool) -> str:
    shown = []
    for row in rows:
        label = f"q{row['quantile']}" if kind == "quantile" and row["quantile"] is not None else f"#{row['rank']}"
        tokens = window_tokens(row["token_strs"], row["activations"], scale, special, show_special)
        shown.append({**row, "label": label, "tokens": merge_unlit(tokens)})
    return ENV.from_string(MACROS).render(title=window_html.TITLES[kind], kind=kind, rows=shown,
                                          scale=scale).strip()


HOSTILE = ["<s>", "", "\r", "\n", "\t", " <b>&amp;\"'", "<|im_start|>", " ok", "😀", "\u200b", "\\", " a"]


def _rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for rank in range(n):
        length = rng.randint(0, 12)
        tokens = [rng.choice(HOSTILE) for _ in range(length)]
        acts: list[Any] = [rng.choice([0.0, 0.0, 0.0, -1.0, 0.5, 3.0, 1e-9, 7.123456789, math.nan, None, math.inf])
                           for _ in range(length - rng.randint(0, 2))]  # sometimes shorter than the tokens
        rows.append({"rank": rank, "quantile": rng.choice([None, 0, 3]), "token_strs": tokens, "activations": acts,
                     "max_activation": rng.choice([None, math.nan, 2.5, 1234.5678]),
                     "document": rng.choice([None, "", 'doc "<x>" & y', "wide.txt#3"]),
                     "cut_before": rng.choice([0, 4, None]), "cut_after": rng.choice([0, 2])})
    return rows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("show_special", [False, True])
def test_sections_are_the_macros_bytes(seed: int, show_special: bool) -> None:
    rng = random.Random(seed)
    special = SpecialTokens(None)  # the pattern fallback: <s>, <|im_start|>
    for kind in ("top", "quantile", "random"):
        rows = _rows(rng, rng.randint(0, 6))
        for scale in (3.0, 0.0, 1e-12):
            found = window_html.special_present(rows, special)
            fast = window_html.section(kind, rows, scale, found, show_special)
            assert str(fast) == plain_section(kind, rows, scale, special, show_special)


def test_runs_merge_between_lit_and_special_tokens() -> None:
    tokens = ["<s>", " a", " b", "\n", " hit", " c", "", " d", "<s>", " e"]
    html = window_html.window(tokens, [0, 0, 0, 0, 4.0, 0, 0, 0, 0, 0], 4.0, {"<s>"}, True)
    assert html == ('<span class="tok special" title="special token">&lt;s&gt;</span><span class="tok"> a b↵</span>'
                    '<span class="tok on" style="background:#ff8c00" title="4" data-act="4"> hit</span>'
                    '<span class="tok"> c d</span><span class="tok special" title="special token">&lt;s&gt;</span>'
                    '<span class="tok"> e</span>')
    assert window_html.window(["<s>", " a", "<s>", " b"], [0, 0, 0, 0], 1.0, {"<s>"}, False) == \
        '<span class="tok"> a b</span>'  # hidden specials do not split a run
    assert window_html.window([], [], 1.0, set(), False) == ""


def test_inline_colour_is_highlight_rgb() -> None:
    rng = random.Random(7)
    values = [0.0, 1.0, 0.5, 1e-300, 1 - 1e-16, 1 + 1e-16, 2.0, math.inf, math.nan, -0.0, -1.0]
    values += [rng.random() for _ in range(2000)] + [rng.uniform(-2, 3) for _ in range(500)]
    for value in values:
        assert window_html._colour(value) == "#%02x%02x%02x" % window_html.highlight_rgb(value)
