"""A dictionary at a glance: how many features are stored, dead, explained, scored and
failed, the density histogram on a log scale (where dead, rare and dense features show
up), and each scorer's distribution of best scores. Queries and the page both live here;
the plots are server-side SVG like every other chart in the browser."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from featurelens.browser.charts import bar_chart
from featurelens.browser.render import Links
from featurelens.browser.templating import render

Rows = Callable[[str, list[Any]], list[dict[str, Any]]]

#: Density bins per decade on the log-x histogram.
DENSITY_BINS_PER_DECADE = 4
#: Width of a score histogram bin.
SCORE_BIN = 0.1


@dataclass
class Overview:
    dictionary: dict[str, Any]
    counts: dict[str, int]
    density_edges: list[float] = field(default_factory=list)
    density_counts: list[int] = field(default_factory=list)
    #: scorer -> (bin edges, counts, number of features scored, mean best score)
    scores: dict[str, tuple[list[float], list[int], int, float | None]] = field(default_factory=dict)


def load_overview(rows: Rows, dictionary: dict[str, Any]) -> Overview:
    """Counts and histograms of one dictionary, in a handful of grouped queries."""
    did = dictionary["dictionary_id"]
    counts = rows(
        "SELECT count(*) AS stored, count(*) FILTER (WHERE fire_count = 0) AS dead, "
        "(SELECT count(DISTINCT feature) FROM explanations WHERE dictionary_id = ?) AS explained, "
        "(SELECT count(DISTINCT feature) FROM scores WHERE dictionary_id = ? AND status = 'ok') AS scored, "
        "(SELECT count(DISTINCT feature) FROM scores WHERE dictionary_id = ? AND status = 'undefined') AS undefined, "
        "(SELECT count(DISTINCT feature) FROM failures WHERE dictionary_id = ?) AS failed "
        "FROM features WHERE dictionary_id = ?", [did] * 5)[0]
    overview = Overview(dictionary, {k: int(v or 0) for k, v in counts.items()})
    per = DENSITY_BINS_PER_DECADE
    bins = rows(f"SELECT floor(log10(density) * {per})::INTEGER AS b, count(*) AS n FROM features "
                "WHERE dictionary_id = ? AND density > 0 GROUP BY 1 ORDER BY 1", [did])
    if bins:
        first, last = int(bins[0]["b"]), int(bins[-1]["b"])
        by_bin = {int(r["b"]): int(r["n"]) for r in bins}
        overview.density_edges = [10 ** (b / per) for b in range(first, last + 2)]
        overview.density_counts = [by_bin.get(b, 0) for b in range(first, last + 1)]
    best = rows("SELECT scorer, floor(best / ?)::INTEGER AS b, count(*) AS n, sum(best) AS total FROM "
                "(SELECT feature, scorer, max(score) AS best FROM scores WHERE dictionary_id = ? AND "
                "status = 'ok' AND isfinite(score) GROUP BY ALL) GROUP BY ALL ORDER BY 1, 2", [SCORE_BIN, did])
    by_scorer: dict[str, dict[int, tuple[int, float]]] = {}
    for r in best:
        by_scorer.setdefault(r["scorer"], {})[int(r["b"])] = (int(r["n"]), float(r["total"]))
    for scorer, found in by_scorer.items():
        # Scores are correlations (-1..1) or accuracies / AUROC (0..1): show the whole range.
        lo, hi = min(min(found), 0), round(1 / SCORE_BIN) - 1
        counts_ = [found.get(b, (0, 0.0))[0] for b in range(lo, hi + 1)]
        # A score of exactly 1.0 falls into the bin above 1; fold it into the last bin.
        counts_[-1] += sum(n for b, (n, _) in found.items() if b > hi)
        n = sum(v[0] for v in found.values())
        mean = sum(v[1] for v in found.values()) / n if n else None
        overview.scores[scorer] = ([round(b * SCORE_BIN, 6) for b in range(lo, hi + 2)], counts_, n, mean)
    return overview


def _density_tick(value: float) -> str:
    exponent = math.log10(value)
    return f"1e{exponent:.0f}" if abs(exponent - round(exponent)) < 1e-9 else f"{value:.2g}"


def overview_page(overview: Overview, links: Links) -> str:
    """The overview page of one dictionary (templates/overview.html)."""
    d, c = overview.dictionary, overview.counts
    counts = [("features stored", c["stored"]), ("width (d_sae)", d.get("d_sae")),
              ("dead (never fired)", c["dead"]), ("explained", c["explained"]),
              ("scored", c["scored"]), ("score undefined", c["undefined"]),
              ("with failures", c["failed"])]
    density = None
    if overview.density_counts:
        density = bar_chart(overview.density_edges, overview.density_counts,
                            x_label="density (fraction of tokens, log scale)", y_label="features",
                            aria="Histogram of feature densities", log_x=True, tick=_density_tick, css="chart")
    scores = [(scorer, n, mean, bar_chart(edges, bins, x_label=f"best {scorer} score per feature",
                                          y_label="features", aria=f"Histogram of {scorer} scores",
                                          tick=lambda v: f"{v:g}", css="chart"))
              for scorer, (edges, bins, n, mean) in sorted(overview.scores.items())]
    return render("overview.html", title=f"{d['dictionary_id']} overview", links=links, did=d["dictionary_id"],
                  d=d, counts=counts, density=density, dead=c["dead"], scores=scores)
