"""The dry run counts tokens with the provider's tokenizer, fast (issue 10, item 7)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from llm_fixtures import fill

from featurelens.core.host.manager import create
from featurelens.core.selection import Selection, stream_records
from featurelens.labelers.explain import ExplainSpec, explain_features, plan_explain
from featurelens.llm.engine import EngineSettings
from featurelens.llm.plan_sample import sample_selection
from featurelens.llm.token_count import counter_for

ROOT = Path(__file__).resolve().parents[1]
O200K_CACHE_NAME = "fb374d419588a4632f3f557e76b4b70aebbca790"  # tiktoken's cache key for o200k_base


def _o200k_file() -> Path | None:
    for base in (ROOT.parent / "shared", ROOT.parents[1] / "shared", Path("/work/shared")):
        candidate = base / "data" / "o200k_base.tiktoken"
        if candidate.exists():
            return candidate
    return None


@pytest.fixture
def o200k(tmp_path, monkeypatch):
    """tiktoken's o200k_base vocabulary, offline (tiktoken would download it once)."""
    source = _o200k_file()
    if source is None:
        pytest.skip("o200k_base.tiktoken is not in ../shared/data; tiktoken cannot load it offline")
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    shutil.copy(source, cache / O200K_CACHE_NAME)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    import tiktoken

    return tiktoken.get_encoding("o200k_base")


def test_openai_count_is_o200k_plus_chat_framing_and_four_characters_was_far_off(store, o200k):
    fill(store, 40, n_sequences=128)
    # the token tables (style=table) are where four characters a token was furthest off
    explainer = create("explainer", "token-activations", style="table")
    requests = [r for page in stream_records(store, Selection()) for rec in page for r in explainer.requests(rec)]
    expected = sum(sum(len(o200k.encode_ordinary(m["content"])) + 3 for m in r.messages) + 3 for r in requests)
    plan = plan_explain(store, ExplainSpec("openai:gpt-4o-mini", explainer_options=(
        ("features_per_request", 1), ("style", "table"))))  # one request a feature, as counted above
    assert plan.input_tokens == expected
    assert "tiktoken o200k_base" in "\n".join(plan.lines())
    characters = sum(len(m["content"]) // 4 + 4 for r in requests for m in r.messages)
    assert abs(characters - expected) / expected > 0.10  # the old estimate missed by more than 10 %


def test_gpt4_uses_cl100k_and_anthropic_says_it_is_an_estimate():
    assert counter_for("openai", "gpt-4").method.startswith(("tiktoken cl100k_base", "about 4 characters"))
    assert "estimated" in counter_for("anthropic", "claude-haiku-4-5").method


def test_local_dry_run_equals_the_input_tokens_of_the_real_run(store, tiny_model_dir, one_thread):
    fill(store, 3, n_sequences=16)
    spec = ExplainSpec(f"local:{tiny_model_dir}", explainer_options=(("max_tokens", 2),))
    planned = plan_explain(store, spec)
    explain_features(store, spec, settings=EngineSettings(concurrency=1, progress=False))
    real = store.execute("SELECT sum(input_tokens) FROM llm_calls WHERE status = 'ok'")[0][0]
    assert planned.input_tokens == real
    assert "the model's own tokenizer" in planned.counted_with


def test_a_large_selection_is_planned_on_a_sample_within_ten_percent(store, o200k):
    fill(store, 1500, n_sequences=1024)
    sample, scale, planned, total = sample_selection(store, Selection(limit=1400), size=300)
    assert total == 1400 and 200 < planned < 400 and scale == pytest.approx(1400 / planned)
    sampled_plan = plan_explain(store, ExplainSpec("openai:gpt-4o-mini", limit=1400))  # 1,400 > 1,000
    assert sampled_plan.sampled is not None and sampled_plan.features == pytest.approx(1400, rel=0.02)
    import featurelens.llm.plan_sample as plan_sample

    real_size = plan_sample.SAMPLE_FEATURES
    plan_sample.sample_selection.__defaults__ = (10**9,)  # plan every feature, for the reference
    try:
        full = plan_explain(store, ExplainSpec("openai:gpt-4o-mini", limit=1400))
    finally:
        plan_sample.sample_selection.__defaults__ = (real_size,)
    assert full.sampled is None and full.features == 1400
    assert sampled_plan.input_tokens == pytest.approx(full.input_tokens, rel=0.10)
    line = next(x for x in sampled_plan.lines() if x.startswith("input tokens"))
    assert "planned on" in line and "of 1,400 features" in line


def test_dry_run_prints_expected_wall_time_from_concurrency_and_rate_limits(store, o200k):
    fill(store, 30, n_sequences=64)
    single = (("features_per_request", 1),)  # one call a feature (API models group 4 by default)
    plan = plan_explain(store, ExplainSpec("openai:gpt-4o-mini", explainer_options=single),
                        settings=EngineSettings(concurrency=3))
    assert plan.wall_seconds() == pytest.approx(30 * 2.0 / 3)
    limited = plan_explain(store, ExplainSpec("openai:gpt-4o-mini", explainer_options=single),
                           settings=EngineSettings(concurrency=30, rpm=60))
    assert limited.wall_seconds() == pytest.approx(30.0)
    assert any(x.startswith("expected wall time:  30 s at concurrency 30, rpm 60") for x in limited.lines())
