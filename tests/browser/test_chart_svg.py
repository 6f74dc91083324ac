"""Charts drawn by string formatting against the template macro they replace.

The macro lives here only, rendered by the browser's Jinja environment (autoescaped); the
direct writer must give the same bytes for histograms of every shape, hostile labels
included, and the pages that draw charts must still carry one ``<rect>`` per bar."""

from __future__ import annotations

import random

import pytest

from featurelens.browser.charts import bar_chart, bar_chart_svg, chart_svg
from featurelens.browser.render_feature import histogram_chart
from featurelens.browser.templating import ENV

MACRO = """\
{% macro chart(c) -%}
<svg class="{{ c.css }}" viewBox="0 0 {{ c.width }} {{ c.height }}" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{{ c.aria }}">
{%- for b in c.bars -%}
<rect x="{{ '%.1f'|format(b.x) }}" y="{{ '%.1f'|format(b.y) }}" width="{{ '%.1f'|format(b.w) }}" height="{{ '%.1f'|format(b.h) }}"><title>{{ b.lo }} to {{ b.hi }}: {{ b.count }}</title></rect>
{%- endfor -%}
<line class="axis" x1="{{ c.left }}" y1="{{ c.base }}" x2="{{ c.right }}" y2="{{ c.base }}"/><line class="axis" x1="{{ c.left }}" y1="{{ c.top }}" x2="{{ c.left }}" y2="{{ c.base }}"/>
{%- for t in c.ticks -%}
<text class="tick" x="{{ '%.1f'|format(t.x) }}" y="{{ t.y }}" text-anchor="{{ t.anchor }}">{{ t.text }}</text>
{%- endfor -%}
<text class="axis-title" x="{{ '%.1f'|format(c.x_title_x) }}" y="{{ c.height - 3 }}" text-anchor="middle">{{ c.x_label }}</text><text class="axis-title" x="12" y="{{ '%.1f'|format(c.y_title_y) }}" text-anchor="middle" transform="rotate(-90 12 {{ '%.1f'|format(c.y_title_y) }})">{{ c.y_label }}</text></svg>
{%- endmacro %}{{ chart(c) }}"""


def by_macro(chart) -> str:
    return ENV.from_string(MACRO).render(c=chart)


def histograms(seed: int, n: int) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        bins = rng.choice([1, 2, 3, 10, 20, 37])
        if rng.random() < 0.5:
            low = 10 ** rng.uniform(-6, 1)
            edges = [low * (10 ** rng.uniform(0.01, 0.5)) ** i for i in range(bins + 1)]
        else:
            low, step = rng.uniform(-5, -0.001), rng.uniform(0.001, 3)
            edges = [low + i * step for i in range(bins + 1)]
        counts = [rng.choice([0, 1, rng.randrange(1, 10 ** rng.randrange(1, 8))]) for _ in range(bins)]
        counts[rng.randrange(bins)] = max(1, counts[0])
        out.append((edges, counts))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_histograms_have_the_macros_bytes(seed: int) -> None:
    for edges, counts in histograms(seed, 50):
        chart = histogram_chart(edges, counts)
        assert chart is not None
        assert str(chart_svg(chart)) == by_macro(chart)
        assert chart_svg(chart).count("<rect") == len(counts)


def test_hostile_labels_are_escaped_as_the_macro_escapes_them() -> None:
    hostile = '<script>"&\'x</script>'
    chart = bar_chart([0.0, 0.5, 1.0], [3, 4], x_label=hostile, y_label=hostile + "y", aria=hostile,
                      css='a"b', tick=lambda v: f"<{v}&>")
    svg = str(chart_svg(chart))
    assert svg == by_macro(chart)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert bar_chart_svg([0.0, 0.5, 1.0], [3, 4], x_label="x", y_label="y", aria="a") == \
        by_macro(bar_chart([0.0, 0.5, 1.0], [3, 4], x_label="x", y_label="y", aria="a"))


def test_a_template_writes_a_chart_by_naming_it() -> None:
    chart = bar_chart([1.0, 2.0, 4.0], [1, 2], x_label="x", y_label="y", aria="a", log_x=True)
    assert ENV.from_string("<p>{{ c }}</p>").render(c=chart) == f"<p>{by_macro(chart)}</p>"
