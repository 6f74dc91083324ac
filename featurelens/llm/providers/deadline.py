"""One deadline for a whole request, body included.

The SDKs' ``timeout`` bounds each socket operation, not the request: a server that sends
its headers and then one byte of the body every few tenths of a second kept a call with
``timeout=3`` open for 90 s. :func:`within` bounds the whole call by the same number of
seconds; running out is a ``TimeoutError``, which the engine retries like any timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(seconds: object, call: Awaitable[T]) -> T:
    """``await call``, but at most ``seconds`` (not a positive number, e.g. an
    ``httpx.Timeout`` passed from Python: the SDK's own timeouts only)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        return await call
    try:
        if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per request
            async with asyncio.timeout(seconds):
                return await call
        return await asyncio.wait_for(call, seconds)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no complete answer within {seconds:g} s (the provider option "
                           "timeout); the request is retried") from None
