"""The browser's intervention parts: measured ablation effects and the steering panel.

The feature page (templates/feature.html) shows the ``feature_effects`` row beside the
decoder-direction logit effects, and a steering form. The form only works in
``featurelens serve --model ...`` (the model runs in the serve process when the user
asks); elsewhere — plain ``serve``, HTML exports — the panel says so instead of offering
a form that cannot work.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote

from featurelens.browser.templating import render


def attach_effects(query: Callable[[str, list[Any]], list[dict[str, Any]]], dictionary_id: str,
                   features: list[int], out: dict[int, Any]) -> None:
    """Set ``effects`` on each :class:`FeatureData` in ``out`` from ``feature_effects``.

    A store written before the table existed (opened read-only, so not migrated) has none.
    """
    exists = query("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'feature_effects'", [])
    if not exists or not exists[0]["n"]:
        return
    for row in query("SELECT * FROM feature_effects WHERE dictionary_id = ? AND list_contains(?, feature)",
                     [dictionary_id, features]):
        target = out.get(int(row["feature"]))
        if target is not None:
            target.effects = row


def steer_url(dictionary_id: str, feature: int) -> str:
    return f"/steer/{quote(dictionary_id, safe='')}/{feature}"


def steer_result_page(dictionary_id: str, feature: int, links: Any, *, result: Any = None,
                      error: str | None = None) -> str:
    """Baseline and steered text side by side (or the reason there is none)."""
    return render("steer.html", title="Steering", links=links, did=dictionary_id, feature=feature,
                  result=result, error=error)
