"""Runs ``explain`` against a fault server in forked children, so a test can ``kill -9``
many runs without paying Python's start-up each time.

Reads one JSON command a line on stdin (``store``, ``url``, ``llm``, ``limit``), forks a
child that runs :func:`explain_features` on a real store, prints ``PID <pid>``, waits,
and prints ``EXIT <status>`` (``-9`` when killed) and, from the child, ``STATS {...}``.
This parent opens no store and starts no thread, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import sys

import featurelens  # noqa: F401 - imported once here, inherited by every child
from featurelens.core.store.database import Store
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.llm.engine import EngineSettings
from featurelens.llm.providers import build_provider
from featurelens.llm.retry import RetryPolicy


def child(command: dict) -> None:
    settings = EngineSettings(concurrency=command.get("concurrency", 8), progress=False,
                              retry=RetryPolicy(max_attempts=4, base_s=0.01, cap_s=0.05))
    with Store.open(command["store"]) as store:
        provider = build_provider(command["llm"], base_url=command["url"], timeout=2.0)
        # one request a feature unless told: the kill points are counted in answers (API models
        # otherwise get four features a request, and a run would end before most of them)
        options = (("features_per_request", command.get("features_per_request", 1)),)
        stats = explain_features(store, ExplainSpec(command["llm"], explainer_options=options,
                                                    limit=command.get("limit")),
                                 provider=provider, settings=settings)
    print("STATS " + json.dumps(stats.as_dict()), flush=True)


def main() -> None:
    from featurelens.core.host.manager import get_registry

    get_registry()  # plugins discovered and imported once, before any fork
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(command)
            except BaseException as error:  # noqa: BLE001 - reported to the test
                print(f"ERROR {type(error).__name__}: {error}", flush=True)
                code = 1
            finally:
                os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"EXIT {code}", flush=True)


if __name__ == "__main__":
    main()
