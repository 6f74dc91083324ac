"""The explain (token-lookup) and score (token-check) stages alone, in a fresh process.

Run: PYTHONPATH=TREE .venv/bin/python benchmarks/offline_stages_cpu.py STORE N [cli]

On STORE (a 1,048,576-feature store, written to: work on a copy), removes the last N features' token-lookup labels
and token-check scores, then times ``explain_features`` and ``score_features`` over them
by this process's CPU time. ``cli``: import the CLI and fill the plugin registry first, as
``featurelens label`` does. Run it under ``/usr/bin/time`` to compare the process's whole
CPU time with the ``featurelens label`` command's.
"""
import gc
import sys
import time

import featurelens
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.llm.engine import EngineSettings
from featurelens.scorers.score_jobs import ScoreSpec, score_features
path = sys.argv[1]; n = int(sys.argv[2])
if len(sys.argv) > 3:
    import featurelens.cli  # noqa: F401 - the CLI's imports
    from featurelens.core.host.manager import get_registry
    get_registry()
print("tracked objects", len(gc.get_objects()))
with featurelens.open_store(path) as store:
    where = f"feature >= {1048576 - n}"
    store.execute(f"DELETE FROM scores WHERE scorer='token-check' AND {where}")
    store.execute(f"DELETE FROM explanations WHERE explainer='token-lookup' AND {where}")
    settings = EngineSettings(concurrency=32, progress=False)
    c = time.process_time(); s = explain_features(store, ExplainSpec("offline:none", "token-lookup", where=where), settings=settings); c1 = time.process_time() - c
    c = time.process_time(); s = score_features(store, ScoreSpec("offline:none", "token-check", where=where, explainer="token-lookup"), settings=settings); c2 = time.process_time() - c
    print(f"explain {s.succeeded/c1:.0f}/s score {s.succeeded/c2:.0f}/s (CPU)")
