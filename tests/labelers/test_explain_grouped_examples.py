"""Grouped default requests for API models show 6 top windows a feature; an explicit choice wins."""

from __future__ import annotations

import json
import re

import pytest
from jobs.test_cost_estimate import o200k  # noqa: F401  (the o200k vocabulary fixture)
from llm_fixtures import FakeAPI, chat_json

from featurelens.core.host.manager import create
from featurelens.labelers.explain import (
    ExplainSpec,
    explain_features,
    make_explainer,
    plan_explain,
)
from featurelens.labelers.explain_defaults import (
    GROUPED_EXAMPLES,
    resolve,
    with_provider_defaults,
)
from featurelens.llm.engine import EngineSettings
from featurelens.llm.providers import build_provider
from featurelens.testing.planted_features import (
    explain_from_evidence,
    planted_records,
    write_planted_store,
)


def explainer(**options):
    return create("explainer", "token-activations", **options)


def test_grouped_defaults_show_six_windows_and_an_explicit_count_or_one_feature_keeps_ten():
    assert GROUPED_EXAMPLES == 6
    assert with_provider_defaults({}, "anthropic:claude-haiku-4-5", explainer()) == {
        "features_per_request": 4, "n_examples": 6}
    assert with_provider_defaults({"n_examples": 10}, "openai:gpt-4o-mini", explainer()) == {
        "n_examples": 10, "features_per_request": 4}
    assert with_provider_defaults({"features_per_request": 4}, "openai:gpt-4o-mini", explainer()) == {
        "features_per_request": 4}
    assert with_provider_defaults({}, "local:smollm2", explainer()) == {}


def test_resolve_rebuilds_the_explainer_only_when_its_own_options_change():
    spec = ExplainSpec("openai:gpt-4o-mini")
    built = make_explainer(spec)
    resolved, rebuilt = resolve(spec, built, make_explainer)
    assert rebuilt is not built and rebuilt.n_examples == 6 and built.n_examples == 10
    assert resolved.options["n_examples"] == 6
    explicit = ExplainSpec("openai:gpt-4o-mini", explainer_options=(("n_examples", 10),))
    kept = make_explainer(explicit)
    assert resolve(explicit, kept, make_explainer)[1] is kept
    local = ExplainSpec("local:smollm2")
    kept = make_explainer(local)
    assert resolve(local, kept, make_explainer) == (local, kept)


@pytest.fixture
def planted(store):
    records = [r for seed in range(2) for r in planted_records(seed=seed, dictionary_id=f"p{seed}")]
    write_planted_store(store, records)
    return store


def _answer(request):
    content = json.loads(request.content)["messages"][-1]["content"]
    blocks = re.split(r"^Feature (\d+):\n", content, flags=re.MULTILINE)[1:]
    lines = [f"{n}: {explain_from_evidence(body)}" for n, body in zip(blocks[::2], blocks[1::2], strict=True)]
    return 200, chat_json("\n".join(lines)), None


def _windows_per_feature(api: FakeAPI) -> list[int]:
    counts = []
    for request in api.requests:
        content = json.loads(request.content)["messages"][-1]["content"]
        for body in re.split(r"^Feature \d+:\n", content, flags=re.MULTILINE)[1:]:
            counts.append(len(re.findall(r"^\d+\. ", body, flags=re.MULTILINE)))
    return counts


@pytest.mark.parametrize("options, windows", [((), 6), ((("n_examples", 10),), 10)])
def test_openai_requests_show_the_resolved_windows_and_record_them(planted, monkeypatch, options, windows):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    api = FakeAPI(default=_answer)
    stats = explain_features(planted, ExplainSpec("openai:gpt-4o-mini", explainer_options=options),
                             provider=build_provider("openai:gpt-4o-mini", http_client=api.client()),
                             settings=EngineSettings(progress=False))
    assert (stats.succeeded, stats.failed) == (6, 0)
    assert _windows_per_feature(api) == [windows] * 6
    recorded = [json.loads(o) for (o,) in planted.execute("SELECT options FROM explanations")]
    assert all(o["n_examples"] == windows and o["features_per_request"] == 4 for o in recorded)


@pytest.mark.usefixtures("o200k")
def test_the_dry_run_prices_six_windows_fewer_tokens_than_ten(planted):
    default = plan_explain(planted, ExplainSpec("openai:gpt-4o-mini"))
    ten = plan_explain(planted, ExplainSpec("openai:gpt-4o-mini", explainer_options=(("n_examples", 10),)))
    assert default.calls == ten.calls == 2
    assert default.input_tokens < 0.85 * ten.input_tokens
