"""The sortable, filterable feature list of one dictionary.

A researcher looks for features by how they behave (density, max activation, fire
count), by how well they are explained (best score per scorer) and by what they fire
on, so the list sorts by any of those, filters explained / not yet explained, and its
search box matches explanation text and the tokens where top examples peak. Every
choice arrives as a URL parameter and is checked against a fixed set before it reaches
SQL; values are always bound parameters, never pasted into the query.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from featurelens.browser.search_index import like_pattern

#: Sort keys offered, with the SQL expression each one orders by.
SORTS: dict[str, str] = {
    "feature": "f.feature",
    "density": "f.density",
    "max_activation": "f.max_activation",
    "fire_count": "f.fire_count",
}
#: ``score:<scorer>`` sorts by that scorer's best score for the feature.
SCORE_PREFIX = "score:"
EXPLAINED = ("any", "yes", "no")


@dataclass(frozen=True)
class ListRequest:
    """What the user asked the list for; :meth:`from_query` accepts only known values."""

    sort: str = "feature"
    descending: bool = False
    explained: str = "any"
    text: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, list[str]], scorers: list[str]) -> "ListRequest":
        def one(name: str, default: str) -> str:
            return (query.get(name) or [default])[0].strip()

        sort = one("sort", "feature")
        if sort not in SORTS and sort.removeprefix(SCORE_PREFIX) not in scorers:
            sort = "feature"
        explained = one("explained", "any")
        return cls(sort=sort, descending=one("order", "asc" if sort == "feature" else "desc") == "desc",
                   explained=explained if explained in EXPLAINED else "any", text=one("q", "")[:200])

    @property
    def is_default(self) -> bool:
        return self == ListRequest()

    def params(self) -> dict[str, str]:
        """URL parameters that reproduce this request (defaults left out)."""
        out: dict[str, str] = {}
        if self.sort != "feature":
            out["sort"] = self.sort
        if self.descending != (self.sort != "feature"):
            out["order"] = "desc" if self.descending else "asc"
        if self.explained != "any":
            out["explained"] = self.explained
        if self.text:
            out["q"] = self.text
        return out

    def sorted_by(self, sort: str) -> "ListRequest":
        """The same filters sorted by ``sort``; the current key flips its direction."""
        if sort == self.sort:
            return replace(self, descending=not self.descending)
        return replace(self, sort=sort, descending=sort != "feature")


def scorers_of(rows: Callable[[str, list[Any]], list[dict[str, Any]]], dictionary_id: str) -> list[str]:
    """Scorers with at least one score in the dictionary (the list shows a column each)."""
    return [r["scorer"] for r in rows(
        "SELECT DISTINCT scorer FROM scores WHERE dictionary_id = ? ORDER BY scorer", [dictionary_id])]


def list_query(dictionary_id: str, request: ListRequest, page: int, size: int) -> tuple[str, list[Any]]:
    """SQL and parameters for one page of the list (one row more than shown)."""
    params: list[Any] = [dictionary_id]
    joins, where = "", ["f.dictionary_id = ?"]
    if request.sort.startswith(SCORE_PREFIX):
        joins = ("LEFT JOIN (SELECT feature, max(score) AS best FROM scores WHERE dictionary_id = ? "
                 "AND scorer = ? AND status = 'ok' GROUP BY feature) b ON b.feature = f.feature ")
        params = [dictionary_id, request.sort.removeprefix(SCORE_PREFIX), dictionary_id]
        order = "b.best"
    else:
        order = SORTS[request.sort]
    explained = ("EXISTS (SELECT 1 FROM explanations e WHERE e.dictionary_id = f.dictionary_id "
                 "AND e.feature = f.feature)")
    if request.explained == "yes":
        where.append(explained)
    elif request.explained == "no":
        where.append("NOT " + explained)
    if request.text:
        pattern = like_pattern(request.text)
        where.append(
            "(f.feature IN (SELECT feature FROM explanations WHERE dictionary_id = ? AND text ILIKE ? ESCAPE '\\') "
            "OR f.feature IN (SELECT x.feature FROM examples x JOIN sequences s ON s.corpus_id = x.corpus_id "
            "AND s.sequence_id = x.sequence_id WHERE x.dictionary_id = ? AND x.kind = 'top' "
            "AND s.token_strs[x.max_position + 1] ILIKE ? ESCAPE '\\'))")
        params += [dictionary_id, pattern, dictionary_id, pattern]
    direction = "DESC" if request.descending else "ASC"
    sql = (f"SELECT f.feature, f.density, f.max_activation, f.fire_count FROM features f {joins}"
           f"WHERE {' AND '.join(where)} ORDER BY {order} {direction} NULLS LAST, f.feature "
           "LIMIT ? OFFSET ?")
    return sql, params + [size + 1, page * size]


def best_scores_query(dictionary_id: str, features: list[int]) -> tuple[str, list[Any]]:
    """Best ``ok`` score per (feature, scorer) for the listed features."""
    wanted = sorted(features)
    return ("SELECT feature, scorer, max(score) AS score FROM scores WHERE dictionary_id = ? "
            "AND feature BETWEEN ? AND ? AND list_contains(?, feature) AND status = 'ok' GROUP BY ALL",
            [dictionary_id, wanted[0], wanted[-1], wanted])


def list_features(rows: Callable[[str, list[Any]], list[dict[str, Any]]], dictionary_id: str,
                  request: ListRequest, scorers: list[str], page: int = 0, size: int = 50) -> tuple[list[dict[str, Any]], bool]:
    """One page of the list: rows with ``scores`` (scorer -> best score) and the best
    explanation attached by the caller; and whether a next page exists."""
    sql, params = list_query(dictionary_id, request, page, size)
    found = rows(sql, params)
    has_next = len(found) > size
    found = found[:size]
    if found and scorers:
        attach_scores(rows, dictionary_id, found)
    return found, has_next


def attach_scores(rows: Callable[[str, list[Any]], list[dict[str, Any]]], dictionary_id: str,
                  found: list[dict[str, Any]]) -> None:
    """Set ``row["scores"]`` (scorer -> best ok score) on every listed row."""
    if not found:
        return
    best: dict[int, dict[str, float]] = {}
    sql, params = best_scores_query(dictionary_id, [int(r["feature"]) for r in found])
    for r in rows(sql, params):
        best.setdefault(int(r["feature"]), {})[r["scorer"]] = r["score"]
    for r in found:
        r["scores"] = best.get(int(r["feature"]), {})
