"""Serving the browser from inside a test or a benchmark process."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

#: How often the serving loop looks for ``shutdown()``: socketserver's default (0.5 s) made
#: every stop of a test server wait up to half a second.
POLL_S = 0.05


def start_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread; stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name="featurelens-serve",
                              daemon=True)
    thread.start()
    return thread
