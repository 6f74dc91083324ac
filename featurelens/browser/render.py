"""The browser's listing pages: dictionaries, feature lists, search, the SQL box and
"not found". Pure functions from query results to HTML through the Jinja2 templates in
``browser/templates`` (autoescaped: see :mod:`featurelens.browser.templating`), shared
by the live server and the static export; nothing is fetched from a CDN."""

from __future__ import annotations

from typing import Any, Union

from featurelens.browser.feature_list import SCORE_PREFIX, ListRequest
from featurelens.browser.links import ServerLinks, StaticLinks
from featurelens.browser.queries import Page, SqlResult
from featurelens.browser.templating import fmt, render

Links = Union[ServerLinks, StaticLinks]

__all__ = ["Links", "dictionary_page", "fmt", "index_page", "not_found_page", "search_page", "sql_page"]


def index_page(dictionaries: list[dict[str, Any]], links: Links) -> str:
    """Home: every dictionary with its feature and explanation counts."""
    return render("index.html", title="Feature browser", links=links, dictionaries=dictionaries)


def dictionary_page(dictionary: dict[str, Any], page: Page, links: Links,
                    request: ListRequest | None = None, scorers: list[str] | None = None) -> str:
    """One dictionary's features, a page at a time, with their best explanation and best
    score per scorer; live pages sort and filter (``request``), exports list in order."""
    did = dictionary["dictionary_id"]
    request = request or ListRequest()
    scorers = scorers or []
    params = request.params()
    columns: list[tuple[str | None, str]] = [("feature", "feature"), ("density", "density"),
                                             ("max_activation", "max act"), ("fire_count", "fire count"),
                                             (None, "explanation")]
    columns += [(f"{SCORE_PREFIX}{s}", f"best {s}") for s in scorers] or [(None, "score")]
    sorts = [("feature", "feature"), ("density", "density"), ("max_activation", "max activation"),
             ("fire_count", "fire count")] + [(f"{SCORE_PREFIX}{s}", f"best {s} score") for s in scorers]
    return render("dictionary.html", title=did, links=links, did=did, dictionary=dictionary, page=page,
                  request=request, scorers=scorers, columns=columns, sorts=sorts,
                  page_href=lambda p: links.dictionary(did, p, params))


def search_page(text: str, page: Page, links: Links, tokens: list[dict[str, Any]] | None = None,
                meaning: bool = False, note: str | None = None) -> str:
    """Features whose explanation contains ``text``, best score first, and features whose
    top examples peak on a token containing it; or, ``meaning``, explanations closest in
    meaning to ``text`` (``note`` says why there are none)."""
    return render("search.html", title=f"Search {text}", links=links, query=text, text=text, page=page,
                  tokens=tokens or [], by_meaning=meaning, note=note,
                  page_href=lambda p: links.search(text, p, meaning))


def sql_page(query: str, result: SqlResult | None, error: str | None, links: Links) -> str:
    """The SQL box and its result table, or the error as one line."""
    return render("sql.html", title="SQL", links=links, sql=query, result=result, error=error)


def not_found_page(message: str, links: Links) -> str:
    return render("not_found.html", title="Not found", links=links, message=message)


def refused_page(heading: str, message: str, links: Links) -> str:
    """A request refused before routing (wrong Host, another site): its own heading."""
    return render("not_found.html", title=heading, links=links, message=message)
