"""When the result writer flushes: paid answers by ``flush_rows``, offline jobs in bigger
commits, and everything by time."""

from __future__ import annotations

from featurelens.llm.writer import UNASKED_ROWS, ResultWriter


def _writer(store, flush_rows: int = 500, flush_seconds: float = 3600.0) -> ResultWriter:
    return ResultWriter(store, None, flush_rows=flush_rows, flush_seconds=flush_seconds)


def test_jobs_that_asked_an_llm_flush_every_flush_rows(store) -> None:
    writer = _writer(store, flush_rows=5)
    for _ in range(4):
        writer.job_done(asked=True)
    assert not writer.due()
    writer.job_done(asked=True)
    assert writer.due()
    writer.flush()
    assert not writer.due() and writer.jobs_pending == writer.asked_pending == 0


def test_offline_jobs_wait_for_more_rows_and_count_toward_the_total(store) -> None:
    writer = _writer(store, flush_rows=5)
    for _ in range(UNASKED_ROWS - 1):
        writer.job_done(asked=False)
    assert not writer.due()  # thousands of offline jobs are one commit, not hundreds
    writer.job_done(asked=False)
    assert writer.due()
    writer.flush()
    # a mix: the paid answers alone decide at flush_rows
    for _ in range(100):
        writer.job_done(asked=False)
    for _ in range(4):
        writer.job_done(asked=True)
    assert not writer.due()
    writer.job_done(asked=True)
    assert writer.due()


def test_a_flush_rows_above_the_offline_bound_is_kept(store) -> None:
    writer = _writer(store, flush_rows=UNASKED_ROWS * 2)
    for _ in range(UNASKED_ROWS):
        writer.job_done(asked=False)
    assert not writer.due()


def test_time_flushes_whatever_is_pending(store) -> None:
    writer = _writer(store, flush_rows=500, flush_seconds=0.0)
    assert not writer.due()  # nothing pending: nothing to write
    writer.job_done(asked=False)
    assert writer.due()
