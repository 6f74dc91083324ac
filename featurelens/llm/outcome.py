"""How a labeling job ends: its failure summary per stage and an exit status scripts can use.

A selected feature that never fired is neither done nor failed: it is skipped, counted
and named ("52,818 never fired: skipped"), and does not change the exit status.

=====  ===========================================================================
exit   meaning
=====  ===========================================================================
0      every selected feature is done (now or before); nothing failed
3      partial: some work succeeded or was already done, some failed (see failures)
4      nothing succeeded: every piece of work this job tried failed
1      the job could not run (bad option, missing key, unreadable store...)
2      usage error (click)
=====  ===========================================================================

A rerun of the same command retries exactly the failed work, so ``3`` means "run it
again later" and ``4`` usually means "the provider or the options are wrong".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from featurelens.core.store.database import Store
from featurelens.llm import failure_log

if TYPE_CHECKING:
    from featurelens.llm.engine import RunStats

EXIT_OK = 0
EXIT_PARTIAL = 3
EXIT_NOTHING_SUCCEEDED = 4


def exit_status(stats: Iterable["RunStats"]) -> int:
    """0, :data:`EXIT_PARTIAL` or :data:`EXIT_NOTHING_SUCCEEDED` over one job's stages."""
    runs = list(stats)
    failed = sum(s.failed for s in runs)
    if failed == 0:
        return EXIT_OK
    if sum(s.succeeded + s.skipped for s in runs) == 0:
        return EXIT_NOTHING_SUCCEEDED
    return EXIT_PARTIAL


def closing_line(store: Store, stage: str, stats: "RunStats") -> str:
    """The stage's failure summary, printed at the end of every job."""
    return failure_log.stage_summary(store, stage, stats.run_id, stats.resolved)


def status_line(code: int, stats: Iterable["RunStats"]) -> str | None:
    """The last line of a job that did not fully succeed, naming its exit status."""
    runs = list(stats)
    failed = sum(s.failed for s in runs)
    done = sum(s.succeeded for s in runs)
    if code == EXIT_NOTHING_SUCCEEDED:
        return (f"nothing succeeded: all {failed:,} features failed (exit status 4); read the "
                "reasons with featurelens sql \"SELECT * FROM failures WHERE resolved_at IS NULL\".")
    if code == EXIT_PARTIAL:
        return (f"partly done: {done:,} succeeded, {failed:,} failed (exit status 3); run the same "
                "command again to retry only the failed ones.")
    return None


def never_fired_note(stats: "RunStats") -> str:
    """``, 52,818 never fired: skipped`` for a summary line, or nothing."""
    n = getattr(stats, "never_fired", 0)
    return f", {n:,} never fired: skipped" if n else ""


def nothing_to_do(stats: "RunStats") -> str | None:
    """A line saying the selection held no work, when it did not; else ``None``."""
    if stats.jobs or stats.skipped:
        return None
    n = getattr(stats, "never_fired", 0)
    if n:
        return f"Nothing to do: all {n:,} selected features never fired."
    return "Nothing to do: the selection holds no feature that can be labeled."
