"""Running a third-party plugin's code without letting it take the command line down.

A plugin's module runs arbitrary code at import, and its hooks run more at start-up.
``sys.exit()`` there would end every ``featurelens`` command (``plugins list`` included)
silently, a ``KeyboardInterrupt`` would print a traceback, and code that waits forever
(a network call, a lock, a sleep) would hang them all. So each entry point is loaded,
and each of its start-up hooks called, in a daemon thread with a time limit
(:func:`call_isolated`); any exception, ``SystemExit`` and ``KeyboardInterrupt``
included, and running past the limit become the reason the plugin was left out.
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
from typing import Any, Callable

ENV_IMPORT_TIMEOUT = "FEATURELENS_PLUGIN_IMPORT_TIMEOUT"
#: Seconds one plugin may take to import, and each of its start-up hooks; generous, since
#: some import torch or an SDK.
DEFAULT_IMPORT_TIMEOUT = 30.0


def import_timeout() -> float:
    """``$FEATURELENS_PLUGIN_IMPORT_TIMEOUT`` seconds, or the default when unset or unreadable."""
    try:
        value = float(os.environ.get(ENV_IMPORT_TIMEOUT, DEFAULT_IMPORT_TIMEOUT))
    except ValueError:
        return DEFAULT_IMPORT_TIMEOUT
    return value if value > 0 else DEFAULT_IMPORT_TIMEOUT


def call_isolated(call: Callable[[], Any], doing: str, timeout: float | None = None) -> tuple[Any, str | None]:
    """``(result, None)`` when ``call()`` returned within the limit, else ``(None, reason)``;
    ``doing`` names the work in the reason ("being imported", "its register_scorers hook")."""
    limit = import_timeout() if timeout is None else timeout
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except SystemExit as stop:
            outcome["error"] = (f"it called sys.exit({stop.code!r}) in {doing}, "
                                "which a plugin must never do")
        except KeyboardInterrupt:
            outcome["error"] = f"it raised KeyboardInterrupt in {doing}, which a plugin must never do"
        except BaseException as error:  # noqa: BLE001 - anything a plugin raises is its failure
            outcome["error"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=target, name="featurelens-plugin", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        return None, (f"{doing} did not finish within {limit:g} s (it may be waiting on the "
                      f"network or a lock); raise {ENV_IMPORT_TIMEOUT} if it is only slow")
    if "error" in outcome:
        return None, outcome["error"]
    return outcome.get("result"), None


def load_entry_point(entry_point: metadata.EntryPoint, timeout: float | None = None) -> tuple[Any, str | None]:
    """``(plugin, None)`` on success, ``(None, reason)`` when the import failed or ran too long."""
    plugin, reason = call_isolated(entry_point.load, "being imported", timeout)
    if reason is not None and reason.startswith("being imported did not finish"):
        reason = "importing it" + reason.removeprefix("being imported")
    elif reason is not None:
        reason = reason.replace("in being imported", "while being imported")
    return plugin, reason
