"""HTML for the browser's listing pages: layout, dictionaries, feature lists, search
and the SQL box. Pure functions from query results to strings, shared by the live
server and the static export. Every value that came from the store goes through
:func:`esc`; nothing is fetched from a CDN."""

from __future__ import annotations

import html
import math
from typing import Any, Union

from featurelens.browser.explainer_badge import explainer_badge
from featurelens.browser.links import ServerLinks, StaticLinks
from featurelens.browser.queries import Page, SqlResult

Links = Union[ServerLinks, StaticLinks]


def esc(value: Any) -> str:
    """HTML-escape anything (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for display: ``-`` for missing or NaN, otherwise ``digits`` significant figures."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}"
    return esc(value)


def layout(title: str, body: str, links: Links, query: str = "") -> str:
    """The page frame: header with home link, search box (live only), then ``body``."""
    nav = [f'<a href="{esc(links.home())}">featurelens</a>']
    if links.live:
        nav.append(
            f'<form class="search" action="/search" method="get">'
            f'<input type="search" name="q" value="{esc(query)}" placeholder="Search explanations" '
            f'aria-label="Search explanations"><button type="submit">Search</button></form>'
            f'<a href="{esc(links.sql())}">SQL</a>')
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)} · featurelens</title>"
        f"<link rel=\"stylesheet\" href=\"{esc(links.static('style.css'))}\"></head>"
        f"<body><header>{''.join(nav)}</header><main>{body}</main></body></html>\n"
    )


def index_page(dictionaries: list[dict[str, Any]], links: Links) -> str:
    """Home: every dictionary with its feature and explanation counts."""
    if not dictionaries:
        body = ("<h1>No dictionaries yet</h1><p>The store holds no dictionary; run "
                "<code>featurelens run</code> to make one.</p>")
        return layout("Feature browser", body, links)
    rows = "".join(
        f"<tr><td><a href=\"{esc(links.dictionary(d['dictionary_id']))}\">{esc(d['dictionary_id'])}</a></td>"
        f"<td>{esc(d['model_id'])}</td><td>{esc(d['hookpoint'])}</td><td>{esc(d['architecture'])}</td>"
        f"<td class=\"num\">{fmt(d['d_sae'])}</td><td class=\"num\">{fmt(d['n_features'])}</td>"
        f"<td class=\"num\">{fmt(d['n_explained'])}</td></tr>"
        for d in dictionaries)
    body = (
        "<h1>Dictionaries</h1><table class=\"list\"><thead><tr><th>dictionary</th><th>model</th>"
        "<th>hookpoint</th><th>architecture</th><th>width</th><th>features stored</th>"
        f"<th>explained</th></tr></thead><tbody>{rows}</tbody></table>")
    return layout("Feature browser", body, links)


def _score_cell(score: Any) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return '<td class="num">-</td>'
    return f'<td class="num score">{score:.2f}</td>'


def _pager(page: Page, href: Any) -> str:
    parts = []
    if page.page > 0:
        parts.append(f'<a rel="prev" href="{esc(href(page.page - 1))}">← previous</a>')
    parts.append(f"<span>page {page.page + 1}</span>")
    if page.has_next:
        parts.append(f'<a rel="next" href="{esc(href(page.page + 1))}">next →</a>')
    return f'<nav class="pager">{" ".join(parts)}</nav>'


def dictionary_page(dictionary: dict[str, Any], page: Page, links: Links) -> str:
    """One dictionary's features, a page at a time, with their best explanation."""
    did = dictionary["dictionary_id"]
    rows = "".join(
        f"<tr><td class=\"num\"><a href=\"{esc(links.feature(did, r['feature']))}\">{r['feature']}</a></td>"
        f"<td class=\"num\">{fmt(r['density'])}</td><td class=\"num\">{fmt(r['max_activation'])}</td>"
        f"<td>{explainer_badge(r.get('explainer'), r.get('llm'))} "
        f"{esc(r.get('text')) or '<span class=muted>not explained</span>'}</td>"
        f"{_score_cell(r.get('score'))}</tr>"
        for r in page.rows)
    body = (
        f"<h1>{esc(did)}</h1><p class=\"meta\">{esc(dictionary.get('model_id'))} · "
        f"{esc(dictionary.get('hookpoint'))} · {esc(dictionary.get('architecture'))}</p>"
        "<table class=\"list\"><thead><tr><th>feature</th><th>density</th><th>max act</th>"
        f"<th>explanation</th><th>score</th></tr></thead><tbody>{rows}</tbody></table>"
        + _pager(page, lambda p: links.dictionary(did, p)))
    return layout(did, body, links)


def search_page(text: str, page: Page, links: Links) -> str:
    """Features whose explanation contains ``text``, best simulation score first."""
    rows = "".join(
        f"<tr><td><a href=\"{esc(links.feature(r['dictionary_id'], r['feature']))}\">"
        f"{esc(r['dictionary_id'])} #{r['feature']}</a></td><td>{esc(r['text'])}</td>"
        f"<td>{esc(r['explainer'])}</td><td>{esc(r['llm'])}</td>{_score_cell(r['score'])}</tr>"
        for r in page.rows)
    heading = f"Explanations containing “{esc(text)}”" if text else "All explanations, best scored first"
    if not page.rows:
        table = '<p class="empty">No explanation matches; try a shorter word.</p>'
    else:
        table = ("<table class=\"list results\"><thead><tr><th>feature</th><th>explanation</th>"
                 "<th>explainer</th><th>LLM</th><th>score</th></tr></thead>"
                 f"<tbody>{rows}</tbody></table>" + _pager(page, lambda p: links.search(text, p)))
    return layout(f"Search {text}", f"<h1>{heading}</h1>{table}", links, query=text)


def sql_page(query: str, result: SqlResult | None, error: str | None, links: Links) -> str:
    """The SQL box and its result table, or the error as one line."""
    form = (
        "<h1>SQL</h1><p class=\"meta\">Read-only; tables: features, examples, explanations, "
        "scores, dictionaries, sequences, models, runs, llm_calls.</p>"
        "<form class=\"sql\" action=\"/sql\" method=\"get\">"
        f"<textarea name=\"q\" rows=\"5\" aria-label=\"SQL query\">{esc(query)}</textarea>"
        "<button type=\"submit\">Run</button></form>")
    if error is not None:
        return layout("SQL", form + f'<p class="error" role="alert">{esc(error)}</p>', links)
    if result is None:
        return layout("SQL", form, links)
    head = "".join(f"<th>{esc(c)}</th>" for c in result.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in result.rows)
    note = (f'<p class="meta">Showing the first {len(result.rows)} rows; add a LIMIT or '
            "use featurelens sql for the rest.</p>") if result.truncated else (
            f'<p class="meta">{len(result.rows)} rows.</p>')
    table = f'<table class="list sqlresult"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return layout("SQL", form + note + table, links)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return fmt(value, 4)
    text = str(value) if value is not None else "NULL"
    return esc(text if len(text) <= 300 else text[:297] + "...")


def not_found_page(message: str, links: Links) -> str:
    return layout("Not found", f'<h1>Not found</h1><p class="error">{esc(message)}</p>', links)
