"""Per-provider request-per-minute and token-per-minute limits.

Two token buckets refilled continuously: a request waits until both have room, so a
run stays under the provider's quota instead of learning it from 429s. A bucket holds
at most one minute of quota, so an idle period does not turn into a burst.
"""

from __future__ import annotations

import asyncio
import time


class _Bucket:
    def __init__(self, per_minute: float):
        self.capacity = float(per_minute)
        self.rate = float(per_minute) / 60.0
        self.level = float(per_minute)
        self.stamp = time.monotonic()

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now; then it is taken)."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        amount = min(amount, self.capacity)  # a request larger than a minute's quota still runs
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate


class RateLimiter:
    """``await limiter.acquire(tokens)`` before each call; ``None`` limits mean unlimited."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.requests = _Bucket(rpm) if rpm else None
        self.tokens = _Bucket(tpm) if tpm else None
        self._lock = asyncio.Lock()

    @property
    def unlimited(self) -> bool:
        return self.requests is None and self.tokens is None

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of about ``tokens`` tokens fits both limits."""
        if self.unlimited:
            return
        async with self._lock:  # first come, first served
            for bucket, amount in ((self.requests, 1.0), (self.tokens, float(tokens))):
                if bucket is None:
                    continue
                while (delay := bucket.wait_for(amount)) > 0:
                    await asyncio.sleep(delay)
