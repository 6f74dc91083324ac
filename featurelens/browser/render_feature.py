"""One feature's page: statistics, activation histogram (inline SVG), logit effects,
explanations with their scores, and highlighted top / quantile / random examples,
rendered through templates/feature.html (autoescaped).

Token highlighting: each token's background goes from white to orange in proportion
to its activation divided by the feature's maximum activation, so intensities are
comparable across the examples of a page; hovering shows the exact value (``title``).
Colours are solid RGB (no alpha) so a screenshot can check them pixel by pixel.
Special tokens (BOS, chat markers) are left out unless the reader asks for them.
"""

from __future__ import annotations

import math
from typing import Any, Container

from featurelens.browser.charts import Chart, bar_chart
from featurelens.browser.logit_tables import logit_table
from featurelens.browser.queries import FeatureData
from featurelens.browser.render import Links
from featurelens.browser.steering_panel import steer_url
from featurelens.browser.templating import display_token, fmt, render
from featurelens.browser.window_html import HIGHLIGHT_RGB, highlight_rgb, section, special_present

__all__ = ["HIGHLIGHT_RGB", "feature_page", "highlight_rgb", "histogram_chart", "window_tokens"]



def window_tokens(tokens: list[str], activations: list[float], scale: float,
                  special: Container[str] = (), show_special: bool = False) -> list[dict[str, Any]]:
    """One example's tokens as the template draws them: text, colour and value when
    active, a flag for special tokens (dropped unless ``show_special``)."""
    out: list[dict[str, Any]] = []
    for token, act in zip(tokens, activations, strict=False):  # a short activation row: trailing tokens unlit
        value = float(act or 0.0)
        if token in special:
            if show_special:
                out.append({"text": display_token(token), "special": True, "rgb": None, "value": value})
            continue
        rgb = highlight_rgb(value / scale) if value > 0 and scale > 0 else None
        out.append({"text": display_token(token), "special": False, "rgb": rgb, "value": value})
    return out


def histogram_chart(edges: list[float] | None, counts: list[int] | None,
                    width: int = 420, height: int = 150) -> Chart | None:
    """The histogram of firing activations with labelled axes, or None if it never fired.

    The stored bins are log-spaced, so the x axis is logarithmic and every bar is as wide."""
    if not edges or not counts or len(edges) != len(counts) + 1 or max(counts) <= 0:
        return None
    log_x = edges[0] > 0
    return bar_chart(edges, counts, x_label="activation" + (" (log scale)" if log_x else ""),
                     y_label="tokens", aria="Histogram of activations", width=width, height=height,
                     log_x=log_x)


def feature_page(data: FeatureData, links: Links, neighbours: tuple[int | None, int | None] = (None, None),
                 show_special: bool = False, note: str | None = None) -> str:
    """The whole page for one feature (special tokens in examples only if ``show_special``;
    ``note``, a sentence shown above the examples, says what a static report left out)."""
    s = data.stats
    did, index = s["dictionary_id"], int(s["feature"])
    shown = [r["max_activation"] for rows in data.examples.values() for r in rows]
    scale = s["max_activation"] if s["max_activation"] and not math.isnan(s["max_activation"]) \
        else max(shown, default=0.0)
    special = special_present((r for rows in data.examples.values() for r in rows), data.special_tokens)
    has_special = bool(special)
    toggle = None
    if links.live and has_special:
        toggle = {"href": links.feature(did, index) + ("" if show_special else "?special=1"),
                  "text": "hide special tokens" if show_special else "show special tokens (BOS, chat markers)"}
    kinds = {kind: section(kind, data.examples.get(kind, []), scale, special, show_special)
             for kind in ("top", "quantile", "random")}
    model = getattr(links, "steering_model", None)  # set by `serve --model` (browser.steering_server)
    where = set_feature_text(data.dictionary.get("config"), index)
    steer_href = steer_url(did, index) if links.live and model else None
    return render("feature.html", title=f"{did} #{index}", links=links, data=data, s=s, did=did, index=index,
                  prev=neighbours[0], next=neighbours[1], scale=scale, special_toggle=toggle, note=note,
                  steer_href=steer_href, steering_model=model, where=where, logit_table=logit_table,
                  quantiles=", ".join(fmt(q) for q in (s.get("quantiles") or [])) or "-",
                  histogram=histogram_chart(s.get("histogram_edges"), s.get("histogram_counts")), **kinds)


def set_feature_text(config: Any, index: int) -> str | None:
    """Where a transcoder set's feature sits ("layer 3 transcoder, feature 17: ..."); None for
    any other dictionary (its hookpoint says where it reads)."""
    from featurelens.core.transcoder_layout import SetLayout, is_set_config
    from featurelens.core.errors import FeaturelensError

    if not is_set_config(config):
        return None
    try:
        layout = SetLayout.from_config(config)
        layer, local = layout.to_local(index)
    except FeaturelensError:
        return None
    return (f"layer {layer} transcoder, feature {local}: reads {layout.hookpoint_in(layer)}, "
            f"writes {layout.hookpoint_out(layer)}")
