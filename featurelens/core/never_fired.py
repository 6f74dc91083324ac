"""Features that never fired: not work to do, and never a failure.

A real dictionary always has dead features (``fire_count = 0``): nothing can be said
about them, so explaining or scoring one is not work that failed, it is no work at all.
:func:`split_never_fired` splits a selection once, in two count queries, into the
features that fired (the work) and how many never fired (skipped and reported);
:func:`clear_never_fired_failures` resolves ``failures`` rows that earlier versions
wrote for such features, so a job over a whole dictionary can end with nothing failed.

A ``--limit`` keeps its meaning (the first N selected features, dead ones included):
the features that fired among them are those up to the N-th key, so the to-do side is a
plain condition without a limit and streams like any selection.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.core.selection import Selection
from featurelens.core.store.database import Store

#: The condition over ``features`` of a feature that fired at least once.
FIRED = "fire_count > 0"


@dataclass(frozen=True)
class NeverFiredSplit:
    """A selection split into the features that fired and a count of those that did not."""

    to_do: Selection  #: the selected features that fired (no limit: bounded by key instead)
    never_fired: int  #: selected features that never fired
    fired: int  #: selected features that fired

    def line(self) -> str | None:
        """``52,818 never fired: skipped``, or ``None`` when every selected feature fired."""
        return f"{self.never_fired:,} never fired: skipped" if self.never_fired else None


def _bounded(store: Store, selection: Selection) -> str | None:
    """A condition true for the first ``selection.limit`` selected keys, or ``None``
    without a limit; ``FALSE`` when the limit leaves nothing."""
    if selection.limit is None:
        return None
    condition, params = selection.condition()
    rows = store.execute(
        f"SELECT dictionary_id, feature FROM features WHERE {condition} "
        f"ORDER BY dictionary_id, feature LIMIT 1 OFFSET {max(int(selection.limit) - 1, 0)}", params)
    if not rows:
        return None  # fewer features than the limit: all of them
    dictionary_id, feature = rows[0]
    quoted = str(dictionary_id).replace("'", "''")
    return f"(dictionary_id < '{quoted}' OR (dictionary_id = '{quoted}' AND feature <= {int(feature)}))"


def _and(*parts: str | None) -> str:
    return " AND ".join(f"({p})" for p in parts if p)


def split_never_fired(store: Store, selection: Selection) -> NeverFiredSplit:
    """Split ``selection`` into the features that fired (to do) and a count of the rest."""
    bound = _bounded(store, selection)
    condition, params = selection.condition()
    within = _and(condition, bound)
    fired, never = store.execute(
        f"SELECT count(*) FILTER (WHERE {FIRED}), count(*) FILTER (WHERE NOT ({FIRED})) "
        f"FROM features WHERE {within}", params)[0]
    to_do = Selection(_and(selection.where, bound, FIRED), selection.dictionary_id)
    return NeverFiredSplit(to_do, int(never or 0), int(fired or 0))


def clear_never_fired_failures(store: Store, selection: Selection, stage: str,
                               method_prefix: str | None = None) -> int:
    """Resolve the current ``failures`` of ``stage`` for selected features that never
    fired (and whose method starts with ``method_prefix``, or has none); returns how many.

    Earlier versions recorded "has no stored examples" for every dead feature, so a
    rerun would otherwise keep reporting them as failing.
    """
    bound = _bounded(store, selection)
    condition, params = selection.condition()
    method = "TRUE"
    extra: list[object] = []
    if method_prefix is not None:
        method = "(f.method IS NULL OR starts_with(f.method, ?))"
        extra = [method_prefix]
    if not store.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL AND stage = ?",
                         [stage])[0][0]:
        return 0
    rows = store.execute(
        f"UPDATE failures AS f SET resolved_at = current_timestamp, updated_at = current_timestamp "
        f"WHERE f.resolved_at IS NULL AND f.stage = ? AND {method} AND (f.dictionary_id, f.feature) IN "
        f"(SELECT dictionary_id, feature FROM features WHERE {_and(condition, bound)} AND NOT ({FIRED}))",
        [stage, *extra, *params])
    return int(rows[0][0]) if rows else 0
