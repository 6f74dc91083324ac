"""An SDK client per event loop, for a provider that outlives one ``asyncio.run``.

An async SDK client's pooled connections belong to the event loop that opened them.
``label`` shares one provider between its explain and score stages, each run in its own
``asyncio.run``: the second stage then wrote requests on connections of a closed loop,
the server answered them (and billed them), and the client failed with "Event loop is
closed", so the answers were paid and lost. :class:`LoopClient` hands out a fresh client
whenever the running loop is not the one the current client was first used on.

A client must also be closed on its own loop: one merely dropped is closed by the SDK
when it is garbage-collected, on whatever loop runs then, where its connections do not
belong ("Event loop is closed" tracebacks between ``label`` stages). So whoever ends a
loop that used a shared provider awaits :meth:`LoopClient.loop_done` first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class LoopClient:
    """``LoopClient(make)``; :meth:`get` returns a client usable on the running loop.

    ``fixed`` keeps one client whatever the loop (a caller-supplied ``http_client``
    belongs to the caller, who chose its loop)."""

    def __init__(self, make: Callable[[], Any], *, fixed: bool = False):
        self._make = make
        self._fixed = fixed
        self._client = make()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def current(self) -> Any:
        """The client last handed out (for code that runs outside a loop)."""
        return self._client

    def get(self) -> Any:
        """The client for the running loop (the current one, or a new one on a new loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._client
        if self._loop is None or self._fixed:
            self._loop = loop
        elif loop is not self._loop:
            self._client = self._make()  # the old one's connections died with their loop
            self._loop = loop
        return self._client

    async def loop_done(self) -> None:
        """Close the client this loop used (before the loop ends), so none is left for the
        garbage collector to close on another loop; the next loop gets a new one. A
        caller-supplied (``fixed``) client is the caller's to close."""
        if self._fixed or self._loop is None or self._loop is not asyncio.get_running_loop():
            return
        client, self._loop = self._client, None
        self._client = self._make()
        await client.close()
