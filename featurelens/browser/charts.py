"""Server-side SVG bar charts with labelled axes (no JavaScript, no CDN).

Every histogram in the browser says what its axes measure: a title under the x axis,
one beside the y axis, tick values at both ends and in between, and a tooltip per bar.
Bars are the only ``<rect>`` elements, one per bin, so a page's bar count can be checked.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from featurelens.browser.render import esc, fmt

#: Space around the plot for tick labels and axis titles (left, bottom, top, right).
_LEFT, _BOTTOM, _TOP, _RIGHT = 46, 34, 8, 8


def _count_label(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    if value >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


def bar_chart_svg(edges: Sequence[float], counts: Sequence[int], *, x_label: str, y_label: str,
                  aria: str, width: int = 420, height: int = 150, log_x: bool = False,
                  tick: Callable[[float], str] | None = None, css: str = "histogram") -> str:
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

    def x_at(value: float) -> float:
        return _LEFT + plot_w * (value - lo) / span

    bars = []
    for i, count in enumerate(counts):
        x0, x1 = x_at(position[i]), x_at(position[i + 1])
        h = plot_h * count / top
        bars.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{_TOP + plot_h - h:.1f}" width="{max(x1 - x0 - 1, 0.8):.1f}" '
            f'height="{h:.1f}"><title>{esc(tick(edges[i]))} to {esc(tick(edges[i + 1]))}: {count}</title></rect>')
    base = _TOP + plot_h
    axes = (f'<line class="axis" x1="{_LEFT}" y1="{base}" x2="{_LEFT + plot_w}" y2="{base}"/>'
            f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}"/>')
    ticks = []
    chosen = sorted({0, len(edges) // 2, len(edges) - 1})
    for i in chosen:
        anchor = "start" if i == 0 else "end" if i == len(edges) - 1 else "middle"
        ticks.append(f'<text class="tick" x="{x_at(position[i]):.1f}" y="{base + 13}" '
                     f'text-anchor="{anchor}">{esc(tick(edges[i]))}</text>')
    ticks.append(f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + 9}" text-anchor="end">{_count_label(top)}</text>')
    ticks.append(f'<text class="tick" x="{_LEFT - 4}" y="{base}" text-anchor="end">0</text>')
    titles = (f'<text class="axis-title" x="{_LEFT + plot_w / 2:.1f}" y="{height - 3}" '
              f'text-anchor="middle">{esc(x_label)}</text>'
              f'<text class="axis-title" x="12" y="{_TOP + plot_h / 2:.1f}" text-anchor="middle" '
              f'transform="rotate(-90 12 {_TOP + plot_h / 2:.1f})">{esc(y_label)}</text>')
    return (f'<svg class="{css}" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" '
            f'role="img" aria-label="{esc(aria)}">{"".join(bars)}{axes}{"".join(ticks)}{titles}</svg>')
