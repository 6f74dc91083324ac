"""What ``featurelens batches status`` prints: each batch with its progress, then the total.

A million-feature ``--batch-api`` run is tens of provider batches (OpenAI takes 50,000
requests a file, Anthropic 100,000 a batch); a user waiting on them needs to see how far
each one is, not only its status word. Progress is the provider's own request counts
(asked with ``--refresh``, the default); a collected batch has all its answers stored.
"""

from __future__ import annotations

from typing import Any, Mapping

from featurelens.core.redaction import redact

#: Terminal control characters are never echoed from stored text (a hostile status word).
_CONTROL = dict.fromkeys(range(32)) | {127: None}


def _clean(value: Any) -> str:
    return redact(str(value)).translate(_CONTROL)


def progress_lines(rows: list[dict[str, Any]], states: Mapping[str, Any]) -> list[str]:
    """One line per batch (its stored columns and ``progress=``), then one summary line."""
    lines = []
    collected = requests = 0
    for row in rows:
        state = states.get(row["batch_id"])
        count = int(row.get("request_count") or 0)
        requests += count
        if row.get("status") == "collected":
            collected += count
            progress = f"{count}/{count} answers stored"
        elif state is not None and getattr(state, "counts", ""):
            progress = state.counts
        else:
            progress = "unknown (run with --refresh)" if state is None else "not reported by the provider"
        lines.append(" ".join(f"{k}={_clean(v)}" for k, v in row.items()) + f" progress={_clean(progress)}")
    if rows:
        lines.append(f"{len(rows):,} batches, {requests:,} requests; {collected:,} collected "
                     f"({100 * collected / max(requests, 1):.0f}%).")
    return lines
