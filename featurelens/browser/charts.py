"""Server-side SVG bar charts with labelled axes (no JavaScript, no CDN).

Every histogram in the browser says what its axes measure: a title under the x axis,
one beside the y axis, tick values at both ends and in between, and a tooltip per bar.
Bars are the only ``<rect>`` elements, one per bin, so a page's bar count can be checked.
:func:`bar_chart` computes the geometry; the ``chart`` macro in templates/macros.html
draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from featurelens.browser.templating import ENV, fmt

#: Space around the plot for tick labels and axis titles (left, bottom, top, right).
_LEFT, _BOTTOM, _TOP, _RIGHT = 46, 34, 8, 8


def _count_label(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    if value >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


@dataclass
class Chart:
    """A bar chart's geometry and labels, ready for the ``chart`` template macro."""

    width: int
    height: int
    css: str
    aria: str
    x_label: str
    y_label: str
    left: float
    right: float
    top: float
    base: float
    bars: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def x_title_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def y_title_y(self) -> float:
        return (self.top + self.base) / 2


def bar_chart(edges: Sequence[float], counts: Sequence[int], *, x_label: str, y_label: str,
              aria: str, width: int = 420, height: int = 150, log_x: bool = False,
              tick: Callable[[float], str] | None = None, css: str = "histogram") -> Chart:
    """Bars over ``edges`` (``len(counts) + 1`` values), axes titled ``x_label`` / ``y_label``.

    With ``log_x`` the edges are placed on a log scale (they must be positive), so
    log-spaced bins get equal widths and densities spanning decades stay readable.
    """
    tick = tick or fmt
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _BOTTOM - _TOP
    position = [math.log10(e) for e in edges] if log_x else [float(e) for e in edges]
    lo, hi = position[0], position[-1]
    span = (hi - lo) or 1.0
    top = max(max(counts, default=0), 1)
    base = _TOP + plot_h

    def x_at(value: float) -> float:
        return _LEFT + plot_w * (value - lo) / span

    chart = Chart(width, height, css, aria, x_label, y_label, _LEFT, _LEFT + plot_w, _TOP, base)
    for i, count in enumerate(counts):
        x0, x1 = x_at(position[i]), x_at(position[i + 1])
        h = plot_h * count / top
        chart.bars.append({"x": x0 + 0.5, "y": base - h, "w": max(x1 - x0 - 1, 0.8), "h": h,
                           "lo": tick(edges[i]), "hi": tick(edges[i + 1]), "count": count})
    for i in sorted({0, len(edges) // 2, len(edges) - 1}):
        anchor = "start" if i == 0 else "end" if i == len(edges) - 1 else "middle"
        chart.ticks.append({"x": x_at(position[i]), "y": base + 13, "anchor": anchor, "text": tick(edges[i])})
    chart.ticks.append({"x": _LEFT - 4, "y": _TOP + 9, "anchor": "end", "text": _count_label(top)})
    chart.ticks.append({"x": _LEFT - 4, "y": base, "anchor": "end", "text": "0"})
    return chart


def bar_chart_svg(edges: Sequence[float], counts: Sequence[int], **options: Any) -> str:
    """:func:`bar_chart` drawn as an SVG string (for callers outside the templates)."""
    return str(ENV.get_template("macros.html").module.chart(bar_chart(edges, counts, **options)))
