"""Progress for every long step, on a terminal and off it.

On a terminal a step shows a tqdm bar. Off a terminal (a log file, CI, ``nohup``) tqdm
would either stay silent or fill the log with carriage returns, so a step prints one
plain line every ``$FEATURELENS_PROGRESS_SECONDS`` (default 30) and one when it ends.
Steps with nothing to count (computing logit effects, writing a transaction) use
:func:`phase`, which says when they start, how long they have run, and when they end,
so no stage of a job is ever silent for long.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import IO, Any, Iterator

ENV_PROGRESS_SECONDS = "FEATURELENS_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0


def interval_seconds() -> float:
    """Seconds between progress lines off a terminal."""
    try:
        return max(0.0, float(os.environ.get(ENV_PROGRESS_SECONDS, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _is_terminal(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


def _count(value: float, unit_scale: bool) -> str:
    if unit_scale and value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if unit_scale and value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:,.0f}"


class LineProgress:
    """The part of tqdm's interface featurelens uses, printing a line now and then."""

    def __init__(self, total: float | None = None, *, desc: str = "", unit: str = "it", initial: float = 0,
                 unit_scale: bool = False, file: IO[str] | None = None, interval: float | None = None,
                 **_: Any):
        self.total, self.n, self.desc, self.unit, self.unit_scale = total, initial, desc, unit, unit_scale
        self.file = file or sys.stderr
        self.interval = interval_seconds() if interval is None else interval
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = _count(self.n, self.unit_scale)
        if self.total:
            text = f"{self.desc}: {done}/{_count(self.total, self.unit_scale)} {self.unit} " \
                   f"({100 * self.n / self.total:.0f} %)"
        else:
            text = f"{self.desc}: {done} {self.unit}"
        rate = f", {self.n / elapsed:,.1f} {self.unit}/s" if elapsed > 0 and self.n else ""
        return f"{text}, {elapsed:.0f} s{rate}" + (f", {self.postfix}" if self.postfix else "")

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            print(self.line(), file=self.file, flush=True)

    def update(self, n: float = 1) -> None:
        self.n += n
        self._emit()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())
        self._emit()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text
        self._emit()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        self._emit()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._emit(force=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: float | None = None, *, desc: str, unit: str = "it", initial: float = 0,
             enabled: bool = True, file: IO[str] | None = None, unit_scale: bool = False, **tqdm_options: Any) -> Any:
    """A tqdm bar on a terminal, periodic lines elsewhere, nothing when not ``enabled``."""
    from tqdm import tqdm

    file = file or sys.stderr
    if not enabled:
        return tqdm(total=total, disable=True)
    if _is_terminal(file):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, unit_scale=unit_scale,
                    dynamic_ncols=True, **tqdm_options)
    return LineProgress(total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale, file=file)


@contextmanager
def phase(desc: str, *, enabled: bool = True, file: IO[str] | None = None) -> Iterator[None]:
    """Say that ``desc`` started, how long it has run (live on a terminal, every interval
    elsewhere) and when it ended."""
    file = file or sys.stderr
    if not enabled:
        yield
        return
    terminal = _is_terminal(file)
    every = 1.0 if terminal else max(interval_seconds(), 0.5)
    start = time.monotonic()
    stop = threading.Event()
    print(f"{desc}...", file=file, flush=True)

    def tick() -> None:
        while not stop.wait(every):
            elapsed = time.monotonic() - start
            if terminal:
                print(f"\r{desc}: {elapsed:.0f} s", end="", file=file, flush=True)
            else:
                print(f"{desc}: still running, {elapsed:.0f} s", file=file, flush=True)

    ticker = threading.Thread(target=tick, name="featurelens-phase", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        print(f"{chr(13) if terminal else ''}{desc}: done in {time.monotonic() - start:.1f} s", file=file,
              flush=True)
