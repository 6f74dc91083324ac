"""The Jinja2 environment every browser page is rendered with.

Autoescaping is on for every template, so a value from the store (corpus text, an
explanation, a SQL result) can only ever be text: markup reaches a page only from the
templates in ``browser/templates`` and from :mod:`featurelens.browser.window_html`, which
writes the example windows token by token with the same escaping (held to the template
macros' bytes by its test). Undefined names raise instead of rendering empty,
so a template and its view data cannot drift apart silently.
"""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from featurelens.browser.explainer_badge import explainer_badge

#: Longest SQL-box cell shown in full.
CELL_CHARS = 300


def fmt(value: Any, digits: int = 3) -> str:
    """A number for display: ``-`` for missing or NaN, otherwise ``digits`` significant figures."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}"
    return str(value)


def display_token(token: str) -> str:
    """A token as shown: newlines and tabs visible, carriage returns dropped."""
    return token.replace("\n", "↵").replace("\t", "→").replace("\r", "")


def cell(value: Any) -> str:
    """One SQL-box cell: floats to 4 figures, NULL spelled out, long text cut."""
    if isinstance(value, float):
        return fmt(value, 4)
    text = str(value) if value is not None else "NULL"
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 3] + "..."


ENV = Environment(loader=PackageLoader("featurelens.browser", "templates"), autoescape=True,
                  undefined=StrictUndefined, keep_trailing_newline=True, auto_reload=False)
ENV.filters.update(fmt=fmt, display=display_token, cell=cell)
ENV.globals.update(zip=zip, zwsp="\u200b", explainer_badge=explainer_badge)  # zwsp: an empty token still gets a box


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file in browser/templates) with ``context``."""
    context.setdefault("query", "")
    return ENV.get_template(template).render(**context)
