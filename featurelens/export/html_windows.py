"""Example windows as the static report shows them: fewer, and cut around their peak.

A static report has no server to ask for more, so every byte of every page is paid for
once per feature (4,608 features took 452 MB before). A reader judges an example by the
tokens around its peak, which is also what explainers and scorers are shown (delphi's
32-token windows), so the report keeps ``BEFORE`` tokens before the peak and ``AFTER``
after it and marks the cut. It keeps the ``TOP`` strongest windows, one window per
activation quantile (so every part of the range is still seen) and ``RANDOM`` random
ones; ``featurelens serve`` shows every stored window whole.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from featurelens.browser.queries import FeatureData

#: Tokens kept before and after each example's peak (32 in all, delphi's window).
BEFORE = 23
AFTER = 8
#: Top-activation windows kept per feature.
TOP = 10
#: Random non-activating windows kept per feature.
RANDOM = 3


def cut_window(row: dict[str, Any], before: int = BEFORE, after: int = AFTER) -> dict[str, Any]:
    """``row`` with ``token_strs`` and ``activations`` cut to ``before + 1 + after``
    tokens around ``max_position`` (shifted to stay inside the window), and the number
    of tokens left out on each side as ``cut_before`` / ``cut_after``."""
    tokens = list(row["token_strs"])
    n = len(tokens)
    keep = before + 1 + after
    if n <= keep:
        return {**row, "cut_before": 0, "cut_after": 0}
    peak = min(max(int(row.get("max_position") or 0), 0), n - 1)
    start = min(max(0, peak - before), n - keep)
    end = start + keep
    acts = list(row["activations"] or [])
    return {**row, "token_strs": tokens[start:end], "activations": acts[start:end],
            "cut_before": start, "cut_after": n - end}


def one_per_quantile(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first window of each activation quantile, in the order given."""
    seen: set[Any] = set()
    out = []
    for row in rows:
        if row.get("quantile") not in seen:
            seen.add(row.get("quantile"))
            out.append(row)
    return out


def report_examples(record: FeatureData, before: int = BEFORE, after: int = AFTER,
                    top: int = TOP, random: int = RANDOM) -> FeatureData:
    """``record`` with the windows a report page shows: the ``top`` strongest, one per
    quantile and ``random`` random ones, each cut by :func:`cut_window`."""
    kept = {"top": lambda rows: rows[:top], "quantile": one_per_quantile, "random": lambda rows: rows[:random]}
    examples = {kind: [cut_window(r, before, after) for r in kept.get(kind, list)(rows)]
                for kind, rows in record.examples.items()}
    return replace(record, examples=examples)


def note(before: int = BEFORE, after: int = AFTER, top: int = TOP, random: int = RANDOM) -> str:
    """The sentence a report page shows above its examples, saying what was left out."""
    return (f"This static report shows the {top} strongest windows, one per activation quantile and "
            f"{random} random ones, each cut to the {before + 1 + after} tokens around its peak (… marks "
            f"the cut); featurelens serve shows every stored window whole.")
