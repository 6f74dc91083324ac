"""API models get four features an explanation request by default; local models one; estimate agrees."""

from __future__ import annotations

import json
import re

import pytest
from jobs.test_cost_estimate import o200k  # noqa: F401  (the o200k vocabulary fixture)
from llm_fixtures import FakeAPI, chat_json

from featurelens.core.host.manager import create
from featurelens.labelers.explain import ExplainSpec, explain_features, plan_explain
from featurelens.labelers.explain_defaults import (
    default_per_request,
    resolve_spec,
    with_provider_defaults,
)
from featurelens.llm.engine import EngineSettings
from featurelens.llm.providers import build_provider
from featurelens.testing.planted_features import (
    PLANTED,
    explain_from_evidence,
    planted_records,
    write_planted_store,
)


def explainer(**options):
    return create("explainer", "token-activations", **options)


@pytest.mark.parametrize("llm, expected", [("openai:gpt-4o-mini", 4), ("anthropic:claude-haiku-4-5", 4),
                                           ("local:smollm2", 1), ("vllm:some-model", 1), ("offline:none", 1)])
def test_hosted_models_group_four_features_and_every_other_provider_one(llm, expected):
    assert default_per_request(llm, explainer()) == expected


def test_no_grouping_where_the_answer_or_the_explainer_does_not_fit():
    assert default_per_request("openai:gpt-4o-mini", explainer(reasoning=True)) == 1  # several lines an answer
    assert default_per_request("openai:gpt-4o-mini", create("explainer", "token-lookup")) == 1  # no LLM
    assert default_per_request("openai:gpt-4o-mini", explainer(max_tokens=1500)) == 2  # 4 x 1,500 > 4,096
    assert default_per_request("openai:gpt-4o-mini", create("explainer", "highlighted")) == 4


def test_an_explicit_choice_wins_and_one_feature_keeps_the_options_unchanged():
    assert with_provider_defaults({"features_per_request": 1}, "openai:gpt-4o-mini", explainer()) == {
        "features_per_request": 1}
    assert with_provider_defaults({"window": 12}, "openai:gpt-4o-mini", explainer()) == {
        "window": 12, "features_per_request": 4, "n_examples": 6}
    local = ExplainSpec("local:smollm2", explainer_options=(("window", 12),))
    assert resolve_spec(local, explainer()) is local  # the same options, so the same explanation ids


@pytest.fixture
def planted(store):
    records = [r for seed in range(3) for r in planted_records(seed=seed, dictionary_id=f"p{seed}")]
    write_planted_store(store, records)
    return store, records


def grouped_answer(request) -> tuple[int, dict, None]:
    """OpenAI's wire answer to a grouped explanation request: 'N: explanation' per feature."""
    content = json.loads(request.content)["messages"][-1]["content"]
    blocks = re.split(r"^Feature (\d+):\n", content, flags=re.MULTILINE)[1:]
    lines = [f"{n}: {explain_from_evidence(body)}" for n, body in zip(blocks[::2], blocks[1::2], strict=True)]
    return 200, chat_json("\n".join(lines) or "Explanation: " + explain_from_evidence(content)), None


def test_explaining_with_openai_sends_four_features_a_request_and_counts_features(planted, monkeypatch):
    store, _ = planted
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    api = FakeAPI(default=grouped_answer)
    provider = build_provider("openai:gpt-4o-mini", http_client=api.client())
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini"), provider=provider,
                             settings=EngineSettings(progress=False))
    assert len(api.requests) == 3  # 9 features: 4, 4 and 1
    assert (stats.jobs, stats.succeeded, stats.failed) == (9, 9, 0)  # counted per feature, not per request
    rows = store.execute("SELECT feature, text, options FROM explanations")
    names = list(PLANTED)
    assert len(rows) == 9 and all(text == PLANTED[names[f]][1] for f, text, _ in rows)
    assert all(json.loads(options)["features_per_request"] == 4 for _, _, options in rows)  # recorded
    again = explain_features(store, ExplainSpec("openai:gpt-4o-mini"),
                             provider=build_provider("openai:gpt-4o-mini", http_client=FakeAPI(
                                 default=AssertionError("no request may be sent")).client()),
                             settings=EngineSettings(progress=False))
    assert (again.skipped, again.calls) == (9, 0)  # the resolved default gives the same ids


def test_a_grouped_request_that_answers_only_some_features_counts_the_rest_as_failed(planted, monkeypatch):
    store, _ = planted
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def first_only(request):
        status, body, headers = grouped_answer(request)
        text = body["choices"][0]["message"]["content"].splitlines()[0]
        body["choices"][0]["message"]["content"] = text
        return status, body, headers

    provider = build_provider("openai:gpt-4o-mini", http_client=FakeAPI(default=first_only).client())
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini"), provider=provider,
                             settings=EngineSettings(progress=False))
    assert (stats.jobs, stats.succeeded, stats.failed) == (9, 3, 6)
    assert store.execute("SELECT count(*) FROM failures")[0][0] == 6


@pytest.mark.usefixtures("o200k")
def test_estimate_and_the_dry_run_price_the_same_grouped_requests(planted, cli, store_path):
    store, _ = planted
    plan = plan_explain(store, ExplainSpec("openai:gpt-4o-mini"))
    assert (plan.features, plan.calls) == (9, 3)
    store.close()
    out = json.loads(cli("estimate", "--store", str(store_path), "--json", "--scorer", "none",
                         "--llm", "openai:gpt-4o-mini", "--llm", "local:smollm2").output)["estimates"]
    openai, local = (e["stages"][0] for e in out)
    assert openai["features_per_request"] == 4 and local["features_per_request"] == 1
    assert openai["per_feature_high"]["calls"] == pytest.approx(3 / 9)
    # o200k of the same 3 requests (the two counters frame chat messages a few tokens apart)
    assert openai["per_feature_high"]["input"] * 9 == pytest.approx(plan.input_tokens, rel=0.01)
    assert local["per_feature_high"]["calls"] == 1
    assert openai["per_feature_high"]["input"] < 0.8 * local["per_feature_high"]["input"]
    text = cli("estimate", "--store", str(store_path), "--scorer", "none", "--llm", "openai:gpt-4o-mini").output
    assert "explain (4 features a request)" in text
    single = json.loads(cli("estimate", "--store", str(store_path), "--json", "--scorer", "none", "--llm",
                            "openai:gpt-4o-mini", "--option", "features_per_request=1").output)["estimates"][0]
    assert single["stages"][0]["features_per_request"] == 1 and single["stages"][0]["per_feature_high"]["calls"] == 1


def test_a_grouped_answer_with_no_usable_line_is_not_cached_and_the_rerun_resolves_every_feature(
        planted, monkeypatch):
    store, _ = planted
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    garbage = FakeAPI(default=lambda r: (200, chat_json("#@!$ not an answer"), None))
    stats = explain_features(store, ExplainSpec("openai:gpt-4o-mini"),
                             provider=build_provider("openai:gpt-4o-mini", http_client=garbage.client()),
                             settings=EngineSettings(progress=False))
    assert (stats.jobs, stats.succeeded, stats.failed) == (9, 0, 9)
    assert store.execute("SELECT count(*) FROM llm_cache")[0][0] == 0  # asked again next run
    rows = store.execute("SELECT feature, method, reason FROM failures WHERE resolved_at IS NULL")
    assert len(rows) == 9 and all("features_per_request" in m and "no 'N: explanation' line" in r
                                  for _, m, r in rows)
    good = FakeAPI(default=grouped_answer)
    again = explain_features(store, ExplainSpec("openai:gpt-4o-mini"),
                             provider=build_provider("openai:gpt-4o-mini", http_client=good.client()),
                             settings=EngineSettings(progress=False))
    assert len(good.requests) == 3 and (again.succeeded, again.failed) == (9, 0)
    assert store.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL")[0][0] == 0
