"""Planning a large selection from a sample, so ``--dry-run`` stays fast at any size.

Building one feature's prompt takes about a millisecond, and counting its tokens about
as much again; exactly planning 100,000 features would take minutes. Above
:data:`SAMPLE_FEATURES` features the dry run builds and counts the jobs of a uniform
sample (a hash of the feature key, so the same selection always gives the same sample)
and scales the counts by selection / sample. Prompts of one explainer differ little in
length from feature to feature, so a thousand features put the total within a few
percent; below the threshold the count is exact.
"""

from __future__ import annotations

from featurelens.core.selection import Selection, count_features
from featurelens.core.store.database import Store

#: Features planned exactly; larger selections are sampled down to about this many.
SAMPLE_FEATURES = 1000
_MODULUS = 1_000_003


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sample_selection(store: Store, selection: Selection,
                     size: int = SAMPLE_FEATURES) -> tuple[Selection, float, int, int]:
    """``(selection to plan, scale, sampled, total)``: the selection itself with scale 1
    when it is small, else a hashed sample of it and ``total / sampled``."""
    total = count_features(store, selection)
    if total <= size:
        return selection, 1.0, total, total
    condition, params = selection.condition()
    parts = [f"({selection.where})" if selection.where else "TRUE"]
    if selection.limit is not None:  # the first `limit` features in key order, as the run takes them
        last_d, last_f = store.execute(
            f"SELECT dictionary_id, feature FROM features WHERE {condition} "
            f"ORDER BY dictionary_id, feature LIMIT 1 OFFSET {int(selection.limit) - 1}", params)[0]
        parts.append(f"(dictionary_id < {_quote(last_d)} OR "
                     f"(dictionary_id = {_quote(last_d)} AND feature <= {int(last_f)}))")
    threshold = int(_MODULUS * size / total) + 1
    parts.append(f"hash(dictionary_id, feature) % {_MODULUS} < {threshold}")
    sample = Selection(" AND ".join(parts), selection.dictionary_id, None)
    sampled = count_features(store, sample)
    return sample, total / max(sampled, 1), sampled, total
