"""Serving the browser from inside a test or a benchmark process."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


def start_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread; stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="featurelens-serve", daemon=True)
    thread.start()
    return thread
