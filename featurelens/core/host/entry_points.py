"""Importing a third-party plugin without letting it take the command line down.

A plugin's module runs arbitrary code at import. ``sys.exit()`` there would end every
``featurelens`` command (``--help`` included) silently, and a module that waits forever
(a network call, a lock) would hang them all. So each entry point is loaded in a
daemon thread with a time limit, and any exception, ``SystemExit`` included, becomes
the reason the plugin was left out.
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
from typing import Any

ENV_IMPORT_TIMEOUT = "FEATURELENS_PLUGIN_IMPORT_TIMEOUT"
#: Seconds one plugin may take to import; generous, since some import torch or an SDK.
DEFAULT_IMPORT_TIMEOUT = 30.0


def import_timeout() -> float:
    """``$FEATURELENS_PLUGIN_IMPORT_TIMEOUT`` seconds, or the default when unset or unreadable."""
    try:
        value = float(os.environ.get(ENV_IMPORT_TIMEOUT, DEFAULT_IMPORT_TIMEOUT))
    except ValueError:
        return DEFAULT_IMPORT_TIMEOUT
    return value if value > 0 else DEFAULT_IMPORT_TIMEOUT


def load_entry_point(entry_point: metadata.EntryPoint, timeout: float | None = None) -> tuple[Any, str | None]:
    """``(plugin, None)`` on success, ``(None, reason)`` when the import failed or ran too long."""
    limit = import_timeout() if timeout is None else timeout
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["plugin"] = entry_point.load()
        except SystemExit as stop:
            outcome["error"] = (f"it called sys.exit({stop.code!r}) while being imported, "
                                "which a plugin must never do")
        except BaseException as error:  # noqa: BLE001 - anything a plugin raises is its failure
            outcome["error"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=target, name=f"featurelens-import-{entry_point.name}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        return None, (f"importing it did not finish within {limit:g} s (it may be waiting on the "
                      f"network or a lock); raise {ENV_IMPORT_TIMEOUT} if it is only slow")
    if "error" in outcome:
        return None, outcome["error"]
    return outcome.get("plugin"), None
