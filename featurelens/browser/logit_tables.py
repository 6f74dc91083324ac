"""A feature page's logit tables (promoted / suppressed tokens and their values), written
straight to HTML.

A page has two to four of these tables of about ten rows; drawn through a template macro
each row was a loop step and two filters, a visible share of a page's cost in a
million-feature report. :func:`logit_table` writes the same markup in one pass
(tests/browser/test_logit_tables.py compares it with the macro it replaces), escaping every
text as the templates' autoescape does.
"""

from __future__ import annotations

from typing import Any, Sequence

from markupsafe import Markup, escape

from featurelens.browser.templating import display_token, fmt


def _text(value: Any) -> str:
    """``value`` as escaped text, as the templates' autoescape writes it."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return str(escape(text))
    return text


def logit_table(title: str, tokens: Sequence[str] | None, values: Sequence[Any] | None, cls: str) -> Markup:
    """The ``<div class="logits ...">`` of ``tokens`` beside their ``values`` (a missing
    value ends the table, as a shorter list does), or "none stored"."""
    head = f'<div class="logits {_text(cls)}"><h3>{_text(title)}</h3>'
    if not tokens:
        return Markup(f'{head}<p class="empty">none stored</p></div>')
    rows = "".join(f'<tr><td><code>{_text(display_token(t))}</code></td><td class="num">{_text(fmt(v))}</td></tr>'
                   for t, v in zip(tokens, values or []))
    return Markup(f"{head}<table>{rows}</table></div>")
