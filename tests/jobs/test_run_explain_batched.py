"""`featurelens run` keeps enough explanations in flight for the local model to decode them together."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

from featurelens.jobs.run import stages as run_stages
from featurelens.jobs.run.context import RunOptions
from featurelens.labelers import explain
from featurelens.llm.providers.local.provider import BATCH, LocalProvider


def test_the_explain_stage_sends_a_whole_local_batch_at_once(monkeypatch):
    seen = {}

    def fake(store, spec, settings):
        seen["concurrency"] = settings.concurrency
        return SimpleNamespace(jobs=6, skipped=0, succeeded=6, failed=0)

    monkeypatch.setattr(explain, "explain_features", fake)
    ctx = SimpleNamespace(options=RunOptions(), values={"dictionary_id": "d"}, store=None)
    assert run_stages.stage_explain(ctx).status == "done"
    assert seen["concurrency"] >= BATCH > 1  # one request at a time would leave nothing to batch
    assert inspect.signature(LocalProvider).parameters["batch"].default == BATCH
