"""Server-side SVG bar charts with labelled axes (no JavaScript, no CDN).

Every histogram in the browser says what its axes measure: a title under the x axis,
one beside the y axis, tick values at both ends and in between, and a tooltip per bar.
Bars are the only ``<rect>`` elements, one per bin, so a page's bar count can be checked.
:func:`bar_chart` computes the geometry; :func:`chart_svg` draws it, and a template draws
a chart by writing it (``{{ chart }}``, through :meth:`Chart.__html__`). A million-feature
report draws a histogram per page, so the SVG is written in one pass of string formatting
rather than through template loops (tests/browser/test_chart_svg.py holds it to the bytes
of the template macro it replaces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from markupsafe import Markup, escape

from featurelens.browser.templating import fmt

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

    def __html__(self) -> str:
        """The chart drawn (:func:`chart_svg`), so a template writes it as ``{{ chart }}``."""
        return str(chart_svg(self))


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


def _text(value: Any) -> str:
    """``value`` as escaped text, as the templates' autoescape writes it."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return str(escape(text))
    return text


def chart_svg(c: Chart) -> Markup:
    """The chart ``c`` as an inline ``<svg>``: a ``<rect>`` with a tooltip per bar, the two
    axes, the tick labels and the axis titles. Every label is escaped."""
    parts = [f'<svg class="{_text(c.css)}" viewBox="0 0 {_text(c.width)} {_text(c.height)}" '
             f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{_text(c.aria)}">']
    parts.extend(f'<rect x="{b["x"]:.1f}" y="{b["y"]:.1f}" width="{b["w"]:.1f}" height="{b["h"]:.1f}">'
                 f'<title>{_text(b["lo"])} to {_text(b["hi"])}: {_text(b["count"])}</title></rect>'
                 for b in c.bars)
    left, base = _text(c.left), _text(c.base)
    parts.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{_text(c.right)}" y2="{base}"/>'
                 f'<line class="axis" x1="{left}" y1="{_text(c.top)}" x2="{left}" y2="{base}"/>')
    parts.extend(f'<text class="tick" x="{t["x"]:.1f}" y="{_text(t["y"])}" text-anchor="{_text(t["anchor"])}">'
                 f'{_text(t["text"])}</text>' for t in c.ticks)
    y_title = f"{c.y_title_y:.1f}"
    parts.append(f'<text class="axis-title" x="{c.x_title_x:.1f}" y="{_text(c.height - 3)}" text-anchor="middle">'
                 f'{_text(c.x_label)}</text><text class="axis-title" x="12" y="{y_title}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {y_title})">{_text(c.y_label)}</text></svg>')
    return Markup("".join(parts))


def bar_chart_svg(edges: Sequence[float], counts: Sequence[int], **options: Any) -> str:
    """:func:`bar_chart` drawn as an SVG string (for callers outside the templates)."""
    return str(chart_svg(bar_chart(edges, counts, **options)))
