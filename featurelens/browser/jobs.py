"""A running job's progress at the top of every live page.

Labeling runs store their counters in ``runs.progress`` at every flush (done, failed,
cost, the total they started with, and when that was), so the browser can show how far
``explain``/``score`` have got while they write; a run whose counters stopped moving is
shown as possibly stopped, since a killed job leaves its row marked running.
"""

from __future__ import annotations

import time
from typing import Any

from featurelens.browser.templating import render

#: A running job that has not updated its progress for this long is probably gone.
STALE_S = 120.0


def job_line(job: dict[str, Any], now: float | None = None) -> str:
    """One sentence of progress for a run marked running (plain text: the template escapes it)."""
    progress = job.get("progress") or {}
    done = int(progress.get("jobs", 0) or 0) + int(progress.get("skipped", 0) or 0)
    total = progress.get("total")
    parts = [f"{job['kind']} run {job['run_id']}"]
    if total:
        parts.append(f"{done:,} of {int(total):,} features ({100 * done / max(int(total), 1):.0f} %)")
    elif progress:
        parts.append(f"{done:,} features done")
    else:
        parts.append("starting")
    if progress.get("failed"):
        parts.append(f"{int(progress['failed']):,} failed")
    if progress.get("cost_usd"):
        parts.append(f"${float(progress['cost_usd']):.4f}")
    updated = progress.get("updated_at")
    if isinstance(updated, (int, float)):
        age = (now or time.time()) - float(updated)
        parts.append(f"updated {age:.0f} s ago" if age < STALE_S else
                     f"no update for {age / 60:.0f} min: it may have stopped (rerun its command to resume)")
    return " · ".join(parts)


def with_job_banner(page: bytes, jobs: list[dict[str, Any]]) -> bytes:
    """``page`` with a progress box for each running job at the top of ``<main>``."""
    if not jobs:
        return page
    banner = render("jobs.html", lines=[job_line(job) for job in jobs])
    return page.replace(b"<main>", b"<main>" + banner.strip().encode(), 1)
