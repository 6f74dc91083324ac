"""A feature page's example windows, written straight to HTML.

A page shows up to twenty windows of tens of tokens. Drawn through template macros, every
token was a dict, a macro call and three filters: most of a page's cost, which a
million-feature report pays a million times. These functions write the same markup in one
pass over each window (tests/browser/test_window_html.py compares them with the macros
they replace). A feature fires on a few tokens of a window, and a ``<span>`` around every
other token made up most of a page's bytes, so a run of unlit tokens is one plain ``.tok``
text: the same text, a fraction of the markup. Lit and special tokens keep their own
element with colour (:func:`highlight_rgb`), ``title`` and ``data-act``. Every text from
the store is escaped (markupsafe, as the templates' autoescape does).
"""

from __future__ import annotations

from typing import Any, Container, Iterable

from markupsafe import Markup, escape

from featurelens.browser.templating import display_token, fmt

#: Headings of the three kinds of windows, in page order.
TITLES = {"top": "Top activations", "quantile": "Across activation quantiles",
          "random": "Random non-activating windows"}

#: Drawn for a token whose text is empty, so it still gets a box.
ZWSP = "\u200b"

#: RGB of a token at the feature's maximum activation.
HIGHLIGHT_RGB = (255, 140, 0)


def highlight_rgb(intensity: float) -> tuple[int, int, int]:
    """Background of a token whose activation is ``intensity`` (0..1) of the maximum: from
    white to :data:`HIGHLIGHT_RGB`, solid (no alpha) so a screenshot can check it by pixel."""
    a = min(1.0, max(0.0, intensity))
    return tuple(round(255 + (c - 255) * a) for c in HIGHLIGHT_RGB)  # type: ignore[return-value]


#: Per channel, how far :data:`HIGHLIGHT_RGB` is from white.
_TOWARDS = tuple(c - 255 for c in HIGHLIGHT_RGB)


def _colour(intensity: float) -> str:
    """:func:`highlight_rgb` as ``#rrggbb``, computed inline (once per lit token of a page)."""
    a = 1.0 if intensity > 1.0 else intensity if intensity > 0.0 else 0.0  # NaN: 0, as in highlight_rgb
    r, g, b = _TOWARDS
    return "#%02x%02x%02x" % (round(255 + r * a), round(255 + g * a), round(255 + b * a))


def special_present(rows: Iterable[dict[str, Any]], special: Container[str]) -> frozenset[str]:
    """The special tokens that occur in the windows ``rows`` (each distinct token asked once)."""
    distinct: set[str] = set()
    for row in rows:
        distinct.update(row["token_strs"])
    return frozenset(t for t in distinct if t in special)


#: Tokens' escaped display texts, by token (a corpus repeats a vocabulary's worth).
_SHOWN: dict[str, str] = {}
_SHOWN_MOST = 1 << 17


def _shown(token: str) -> str:
    """``token`` as a page shows it, escaped; escaping and :func:`display_token` act per
    character, so the text of a run is the join of its tokens' texts."""
    text = _SHOWN.get(token)
    if text is None:
        if len(_SHOWN) >= _SHOWN_MOST:  # bounded whatever the corpus
            _SHOWN.clear()
        text = _SHOWN[token] = str(escape(display_token(token)))
    return text


def window(tokens: list[str], activations: list[float], scale: float, special: Container[str],
           show_special: bool) -> str:
    """One window's tokens as HTML, coloured by activation / ``scale``; tokens in
    ``special`` only when ``show_special``.

    A window without special tokens (nearly all) is cut at its lit tokens: the texts are
    looked up in one pass and each run between two lit tokens is one slice joined, so the
    Python work per window follows its lit tokens, not its length."""
    if special and any(map(special.__contains__, tokens)):
        return window_with_special(tokens, activations, scale, special, show_special)
    n = min(len(tokens), len(activations))  # a short activation row: trailing tokens dropped
    if n < len(tokens):
        tokens = tokens[:n]
    texts = list(map(_SHOWN.get, tokens))
    if None in texts:
        texts = [_shown(token) if text is None else text for token, text in zip(tokens, texts)]
    lit = [i for i, act in enumerate(activations[:n]) if act and act > 0] if scale > 0 else []  # NaN, None: unlit
    return lit_window(texts, 0, n, activations, 0, lit, scale)


def lit_window(texts: list[str], start: int, n: int, activations: list[float], first: int, lit: list[int],
               scale: float) -> str:
    """The HTML of a window without special tokens: its ``n`` escaped token texts are
    ``texts[start:start + n]``, its activations ``activations[first:first + n]`` and ``lit``
    the window positions (ascending) whose activation is above zero. Taking the texts and
    activations of many windows as two flat lists lets a report read a whole batch of
    windows as arrays and draw each window without a list of its own."""
    parts: list[str] = []
    run = start
    for i in lit:
        at = start + i
        if at > run:
            parts.append(f'<span class="tok">{"".join(texts[run:at]) or ZWSP}</span>')
        value = float(activations[first + i])
        colour = _colour(value / scale)
        parts.append(f'<span class="tok on" style="background:{colour}" title="{"%.4g" % value}" '
                     f'data-act="{"%.6g" % value}">{texts[at] or ZWSP}</span>')
        run = at + 1
    if run < start + n:
        parts.append(f'<span class="tok">{"".join(texts[run:start + n]) or ZWSP}</span>')
    return "".join(parts)


def window_with_special(tokens: list[str], activations: list[float], scale: float, special: Container[str],
                         show_special: bool) -> str:
    """:func:`window` token by token, for a window holding special tokens."""
    parts: list[str] = []
    run: list[str] = []
    shown = _SHOWN.get
    for token, act in zip(tokens, activations):  # a short activation row: trailing tokens dropped
        text = shown(token)
        if text is None:
            text = _shown(token)
        if token in special:
            if show_special:
                if run:
                    parts.append(f'<span class="tok">{"".join(run) or ZWSP}</span>')
                    run = []
                parts.append(f'<span class="tok special" title="special token">{text}</span>')
            continue
        if act and act > 0 and scale > 0:  # NaN and None are unlit
            value = float(act)
            if run:
                parts.append(f'<span class="tok">{"".join(run) or ZWSP}</span>')
                run = []
            colour = _colour(value / scale)
            parts.append(f'<span class="tok on" style="background:{colour}" title="{"%.4g" % value}" '
                         f'data-act="{"%.6g" % value}">{text or ZWSP}</span>')
        else:
            run.append(text)
    if run:
        parts.append(f'<span class="tok">{"".join(run) or ZWSP}</span>')
    return "".join(parts)


def _text(value: Any) -> str:
    """``value`` as escaped text, as the templates' autoescape writes it (markupsafe's
    escaping, without a Markup object per call)."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return str(escape(text))
    return text


def section_head(kind: str, scale: float) -> str:
    """The opening of the ``<section>`` of one kind of windows that has windows."""
    return f'<section class="examples {kind}" data-scale="{escape("%.6g" % scale)}"><h2>{TITLES[kind]}</h2><ol>'


#: The ``<section>`` of a kind of windows that has none, by kind.
EMPTY_SECTION = {kind: f'<section class="examples {kind}"><h2>{title}</h2><p class="empty">none stored</p></section>'
                 for kind, title in TITLES.items()}

#: What closes the ``<section>`` of a kind of windows that has windows.
SECTION_END = "</ol></section>"


def item_head(kind: str, rank: str, label: str, document: str, maximum: str, cut_before: str) -> str:
    """The opening of one window's ``<li>`` up to its tokens, from escaped texts: its rank,
    its label (rank or quantile), its document, its maximum and the number of tokens cut
    before it (empty or ``"0"``: none)."""
    head = (f'<li class="example" data-kind="{kind}" data-rank="{rank}"><span class="label" '
            f'title="{document}">{label} max {maximum}</span><span class="window">')
    if cut_before and cut_before != "0":
        head += f'<span class="cut" title="{cut_before} earlier tokens not shown">…</span>'
    return head


def item_tail(cut_after: str) -> str:
    """The end of one window's ``<li>`` after its tokens (``cut_after`` as in :func:`item_head`)."""
    if cut_after and cut_after != "0":
        return f'<span class="cut" title="{cut_after} later tokens not shown">…</span></span></li>'
    return "</span></li>"


def example_item(kind: str, row: dict[str, Any], window_html: str) -> str:
    """One window's ``<li>``: its label (``row``'s rank or quantile, document and maximum)
    around ``window_html``, with the cut marks of ``row``'s ``cut_before`` / ``cut_after``."""
    label = f"q{row['quantile']}" if kind == "quantile" and row["quantile"] is not None else f"#{row['rank']}"
    cut_before, cut_after = row.get("cut_before"), row.get("cut_after")
    head = item_head(kind, _text(row["rank"]), _text(label), _text(row["document"] or ""),
                     _text(fmt(row["max_activation"])), _text(cut_before) if cut_before else "")
    return f"{head}{window_html}{item_tail(_text(cut_after) if cut_after else '')}"


def section(kind: str, rows: list[dict[str, Any]], scale: float, special: Container[str],
            show_special: bool) -> Markup:
    """The ``<section>`` of one kind of windows (``top``, ``quantile``, ``random``)."""
    if not rows:
        return Markup(EMPTY_SECTION[kind])
    parts = [section_head(kind, scale)]
    for row in rows:
        parts.append(example_item(kind, row, window(row["token_strs"], row["activations"], scale, special,
                                                    show_special)))
    parts.append(SECTION_END)
    return Markup("".join(parts))
