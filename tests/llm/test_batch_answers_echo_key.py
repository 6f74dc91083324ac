"""A provider batch whose answers echo the key (audit of issue 10, item 9, on the batch
path): ``batches collect`` writes answers straight into ``llm_cache`` without passing the
live engine, so the key a result line carries must be masked there too; after collecting,
the key is in no explanation, no cached response and nowhere in the store's bytes."""

from __future__ import annotations

import json

import httpx2
import pytest
from llm_fixtures import fill, use_test_explainer

from featurelens.core.redaction import MASK
from featurelens.jobs.batch_collection import collect_batches
from featurelens.labelers import explain
from featurelens.labelers.explain import ExplainSpec
from featurelens.llm import providers as providers_pkg
from tests.llm.test_batch_api import FakeBatchService

KEY = "batch-Echoed-Secret-0123456789"


class EchoingBatchService(FakeBatchService):
    """Every answer in a downloaded result file carries the key."""

    def handle(self, request):
        response = super().handle(request)
        path = request.url.path
        if request.method == "GET" and (path.endswith("/content") or path.endswith("/results")):
            text = response.content.decode().replace("from the batch", f"from the batch {KEY}")
            text = text.replace("from claude", f"from claude {KEY}")
            return httpx2.Response(200, content=text.encode(), headers=dict(response.headers))
        return response


@pytest.fixture
def service(monkeypatch, store):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    use_test_explainer(monkeypatch)
    fill(store, 5)
    fake = EchoingBatchService(polls_before_done=0)
    original = providers_pkg.build_provider
    monkeypatch.setattr(providers_pkg, "build_provider",
                        lambda spec, **options: original(spec, http_client=fake.client(), **options))
    return fake


@pytest.mark.parametrize("llm", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
def test_collected_batch_answers_are_scrubbed_of_the_key(store, store_path, service, llm):
    explain.submit_explain(store, ExplainSpec(llm, "echo"))
    collect_batches(store, progress=False)
    texts = [r[0] for r in store.execute("SELECT text FROM explanations")]
    cached = [r[0] for r in store.execute("SELECT response FROM llm_cache")]
    assert len(texts) == 4 and all(text.endswith(MASK) for text in texts), texts
    assert cached and not any(KEY in json.loads(c)["text"] for c in cached)
    store.execute("CHECKPOINT")
    for path in store_path.parent.iterdir():
        assert KEY.encode() not in path.read_bytes(), path
