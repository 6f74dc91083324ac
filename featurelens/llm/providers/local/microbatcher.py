"""Gather the requests an event loop sends concurrently into batches for one worker thread.

The engine keeps ``concurrency`` requests in flight; a local model answering them one
at a time reads every weight once per request and decode step, where one read could
serve every request decoding (:mod:`.decode`). :class:`MicroBatcher` queues every request, and one worker thread takes all
that are waiting (up to ``max_batch``, after a short wait for stragglers sent in the
same tick) and answers them with one call of ``run_batch``. While it works, new
requests queue up for the next batch, so a steady stream keeps batches full without a
fixed schedule. The thread ends when the queue is empty and is started again by the
next request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable, Generic, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: answers one batch: a response or the exception that request failed with, per request
RunBatch = Callable[[list[Req]], "list[Resp | BaseException]"]


class MicroBatcher(Generic[Req, Resp]):
    """``await batcher.submit(request)``; see the module docstring."""

    def __init__(self, run_batch: RunBatch, *, max_batch: int = 8, gather_s: float = 0.02):
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.gather_s = gather_s
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._working = False
        self.batch_sizes: list[int] = []  #: sizes of the batches run so far (tests, benchmarks)

    async def submit(self, request: Req) -> Resp:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        with self._lock:
            self._queue.put((request, future, loop))
            if not self._working:
                self._working = True
                threading.Thread(target=self._work, name="featurelens-local-batcher", daemon=True).start()
        return await future

    def _take(self) -> list[tuple]:
        """Every waiting request up to ``max_batch``, waiting ``gather_s`` for a straggler."""
        items = []
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get(timeout=self.gather_s) if items else self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._queue.empty():
                    self._working = False
                    return
            items = [item for item in self._take() if not item[1].cancelled()]
            if not items:
                continue
            self.batch_sizes.append(len(items))
            try:
                answers = self.run_batch([request for request, _, _ in items])
            except BaseException as error:  # noqa: BLE001 - every waiting request learns why
                answers = [error] * len(items)
            for (_, future, loop), answer in zip(items, answers):
                try:
                    loop.call_soon_threadsafe(_settle, future, answer)
                except RuntimeError:  # that event loop has closed: nobody is waiting
                    pass


def _settle(future: asyncio.Future, answer: object) -> None:
    if future.cancelled():
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)
