"""HTML for one feature: statistics, activation histogram (inline SVG), logit effects,
explanations with their scores, and highlighted top / quantile / random examples.

Token highlighting: each token's background goes from white to orange in proportion
to its activation divided by the feature's maximum activation, so intensities are
comparable across the examples of a page; hovering shows the exact value (``title``).
Colours are solid RGB (no alpha) so a screenshot can check them pixel by pixel.
"""

from __future__ import annotations

import math
from typing import Any

from featurelens.browser.queries import FeatureData
from featurelens.browser.render import Links, esc, fmt, layout
from featurelens.interventions.browser_panel import effects_section, steering_panel

#: RGB of a token at the feature's maximum activation.
HIGHLIGHT_RGB = (255, 140, 0)


def highlight_rgb(intensity: float) -> tuple[int, int, int]:
    """Background of a token whose activation is ``intensity`` (0..1) of the maximum."""
    a = min(1.0, max(0.0, intensity))
    return tuple(round(255 + (c - 255) * a) for c in HIGHLIGHT_RGB)  # type: ignore[return-value]


def _display(token: str) -> str:
    return token.replace("\n", "↵").replace("\t", "→").replace("\r", "")


def tokens_html(tokens: list[str], activations: list[float], scale: float) -> str:
    """One example as ``<span>`` tokens, coloured by activation / ``scale``."""
    parts = []
    for token, act in zip(tokens, activations):
        value = float(act or 0.0)
        shown = esc(_display(token)) or "&#8203;"
        if value > 0 and scale > 0:
            r, g, b = highlight_rgb(value / scale)
            parts.append(f'<span class="tok on" style="background-color:rgb({r},{g},{b})" '
                         f'title="{value:.4g}" data-act="{value:.6g}">{shown}</span>')
        else:
            parts.append(f'<span class="tok">{shown}</span>')  # zero: nothing to hover, keep pages small
    return "".join(parts)


def histogram_svg(edges: list[float] | None, counts: list[int] | None,
                  width: int = 420, height: int = 120) -> str:
    """Bars of the histogram of firing activations, with axis labels, as inline SVG."""
    if not edges or not counts or len(edges) != len(counts) + 1 or max(counts) <= 0:
        return '<p class="empty">No activation histogram (the feature never fired).</p>'
    top = max(counts)
    bar_w = width / len(counts)
    bars = []
    for i, count in enumerate(counts):
        h = (height - 20) * count / top
        bars.append(
            f'<rect x="{i * bar_w + 1:.1f}" y="{height - 20 - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}"><title>{fmt(edges[i])} to {fmt(edges[i + 1])}: {count}</title></rect>')
    return (
        f'<svg class="histogram" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" '
        f'role="img" aria-label="Histogram of activations">{"".join(bars)}'
        f'<text x="0" y="{height - 4}">{fmt(edges[0])}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{fmt(edges[-1])}</text></svg>')


def _logits_table(title: str, tokens: list[str] | None, values: list[float] | None, cls: str) -> str:
    if not tokens:
        return f'<div class="logits {cls}"><h3>{title}</h3><p class="empty">none stored</p></div>'
    rows = "".join(f'<tr><td><code>{esc(_display(t))}</code></td><td class="num">{fmt(v)}</td></tr>'
                   for t, v in zip(tokens, values or []))
    return f'<div class="logits {cls}"><h3>{title}</h3><table>{rows}</table></div>'


def _explanations(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<p class="empty">Not explained yet.</p>'
    out = []
    for e in items:
        scores = "".join(
            f'<li><span class="scorer">{esc(s["scorer"])}</span> ({esc(s["llm"])}): '
            + (f'<b class="score">{s["score"]:.3f}</b>' if s["score"] is not None
               and not math.isnan(s["score"]) else f'<i>{esc(s["status"])}</i>')
            + (f' · {s["n_parse_failures"]} unparsed answers' if s["n_parse_failures"] else "")
            + "</li>" for s in e["scores"])
        out.append(
            f'<li class="explanation"><p class="text">{esc(e["text"])}</p>'
            f'<p class="meta">{esc(e["explainer"])} · {esc(e["llm"])}</p>'
            f'<ul class="scores">{scores or "<li class=muted>not scored</li>"}</ul></li>')
    return f'<ul class="explanations">{"".join(out)}</ul>'


def _examples(title: str, kind: str, rows: list[dict[str, Any]], scale: float) -> str:
    if not rows:
        return f'<section class="examples {kind}"><h2>{title}</h2><p class="empty">none stored</p></section>'
    items = []
    for row in rows:
        label = f"q{row['quantile']}" if kind == "quantile" and row["quantile"] is not None else f"#{row['rank']}"
        items.append(
            f'<li class="example" data-kind="{kind}" data-rank="{row["rank"]}">'
            f'<span class="label" title="{esc(row.get("document"))}">{esc(label)} '
            f'max {fmt(row["max_activation"])}</span>'
            f'<span class="window">{tokens_html(row["token_strs"], row["activations"], scale)}</span></li>')
    return (f'<section class="examples {kind}" data-scale="{scale:.6g}"><h2>{title}</h2>'
            f'<ol>{"".join(items)}</ol></section>')


def feature_page(data: FeatureData, links: Links, neighbours: tuple[int | None, int | None] = (None, None)) -> str:
    """The whole page for one feature."""
    s = data.stats
    did, index = s["dictionary_id"], int(s["feature"])
    shown = [r["max_activation"] for rows in data.examples.values() for r in rows]
    scale = s["max_activation"] if s["max_activation"] and not math.isnan(s["max_activation"]) \
        else max(shown, default=0.0)
    prev, nxt = neighbours
    nav = "".join([
        f'<a rel="prev" href="{esc(links.feature(did, prev))}">← #{prev}</a>' if prev is not None else "",
        f'<a href="{esc(links.dictionary(did))}">{esc(did)}</a>',
        f'<a rel="next" href="{esc(links.feature(did, nxt))}">#{nxt} →</a>' if nxt is not None else "",
    ])
    quantiles = ", ".join(fmt(q) for q in (s.get("quantiles") or [])) or "-"
    stats = (
        '<table class="stats">'
        f'<tr><th>density</th><td>{fmt(s["density"])}</td></tr>'
        f'<tr><th>fired on</th><td>{fmt(s["fire_count"])} of {fmt(s["n_tokens"])} tokens</td></tr>'
        f'<tr><th>max activation</th><td>{fmt(s["max_activation"])}</td></tr>'
        f'<tr><th>mean activation</th><td>{fmt(s["mean_activation"])}</td></tr>'
        f'<tr><th>quantiles</th><td>{quantiles}</td></tr></table>')
    dictionary = data.dictionary
    body = (
        f'<nav class="neighbours">{nav}</nav>'
        f'<h1>{esc(did)} <span class="index">#{index}</span></h1>'
        f'<p class="meta">{esc(dictionary.get("model_id"))} · {esc(dictionary.get("hookpoint"))}</p>'
        f'<section class="explain"><h2>Explanations</h2>{_explanations(data.explanations)}</section>'
        f'<div class="panels"><section><h2>Statistics</h2>{stats}</section>'
        f'<section><h2>Activation histogram</h2>{histogram_svg(s.get("histogram_edges"), s.get("histogram_counts"))}</section>'
        f'<section><h2>Logit effects</h2><div class="logit-pair">'
        f'{_logits_table("promoted", s.get("top_logits"), s.get("top_logit_values"), "pos")}'
        f'{_logits_table("suppressed", s.get("bottom_logits"), s.get("bottom_logit_values"), "neg")}'
        '</div></section>' + effects_section(data.effects) + '</div>'
        + steering_panel(did, index, links)
        + _examples("Top activations", "top", data.examples.get("top", []), scale)
        + _examples("Across activation quantiles", "quantile", data.examples.get("quantile", []), scale)
        + _examples("Random non-activating windows", "random", data.examples.get("random", []), scale))
    return layout(f"{did} #{index}", body, links)
