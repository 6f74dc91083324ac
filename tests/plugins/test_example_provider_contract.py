"""The example plugin's provider is planned, priced, batched and grouped exactly as a built-in.

``example-echo`` declares itself (``ProviderInfo``) as ``anthropic:claude-sonnet-4-5`` is
declared (batch API, prompt cache from 1,024 tokens, four features a request, one output
token at least, the same list prices), but counts tokens its own way and has its own
batch client. Each path that reads a provider's declaration must then give
for the example what it gives for the built-in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from llm_fixtures import fill

from featurelens.core.host import manager as plugins
from featurelens.core.host.manager import create
from featurelens.labelers.explain_defaults import with_provider_defaults
from featurelens.llm.batch.choice import choose_batch

EXAMPLE_SRC = Path(__file__).resolve().parents[2] / "examples" / "featurelens-example-plugin" / "src"
ECHO, BUILTIN = "example-echo:v1", "anthropic:claude-sonnet-4-5"


@pytest.fixture
def example(monkeypatch, tmp_path):
    """The example plugin loaded beside the built-ins, its batches kept in ``tmp_path``."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    monkeypatch.setenv("FEATURELENS_EXAMPLE_BATCHES", str(tmp_path / "echo-batches"))
    for name in [m for m in sys.modules if m.startswith("featurelens_example")]:
        monkeypatch.delitem(sys.modules, name)
    import featurelens_example

    monkeypatch.setattr(plugins, "_HOST", plugins.build_host([("example", featurelens_example)]))
    return featurelens_example


def test_grouped_explanations_and_the_batch_default_match_the_builtin(example):
    explainer = create("explainer", "token-activations")
    assert with_provider_defaults({}, ECHO, explainer) == with_provider_defaults({}, BUILTIN, explainer) == {
        "features_per_request": 4, "n_examples": 6}
    use, note = choose_batch(None, 20_000, 10_000, ECHO)
    assert use and note == choose_batch(None, 20_000, 10_000, BUILTIN)[1].replace("anthropic", "example-echo")
    assert choose_batch(None, 500, 10_000, ECHO) == (False, None)


def test_estimate_prices_the_example_as_the_builtin(example, store_path, cli):
    import featurelens

    with featurelens.open_store(store_path) as store:
        fill(store, 24, n_sequences=32)
    result = cli("estimate", "--llm", BUILTIN, "--llm", ECHO, "--json", "--store", store_path)
    assert result.exit_code == 0, result.output
    builtin, echo = json.loads(result.output)["estimates"]
    assert builtin["llm"] == BUILTIN and echo["llm"] == ECHO
    assert echo["tokenizer"] == "words (the echo bills a token a word)"
    for mine, theirs in zip(echo["stages"], builtin["stages"], strict=True):
        # the same grouping, scoring mode, calls and output bound; input as each counts it
        assert {k: v for k, v in mine.items() if not k.startswith("per_feature")} == {
            k: v for k, v in theirs.items() if not k.startswith("per_feature")}
        for bound in ("per_feature_low", "per_feature_high"):
            assert mine[bound]["calls"] == theirs[bound]["calls"]
            assert mine[bound]["output"] == theirs[bound]["output"]
            assert mine[bound]["cached"] == 0 < mine[bound]["input"]  # prefixes below 1,024 words
    assert echo["stages"][0]["features_per_request"] == 4
    assert echo["usd_batch"][0] == pytest.approx(echo["usd_live"][0] / 2)  # the batch discount


def _dry_run(cli, store_path, llm: str, *extra: str) -> dict[str, str]:
    result = cli("explain", "--llm", llm, "--dry-run", *extra, "--store", store_path)
    assert result.exit_code == 0, result.output
    return {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
            for line in result.output.splitlines() if ":" in line}


def test_dry_run_counts_with_the_declared_counter_and_groups_as_the_builtin(example, store_path, cli):
    import featurelens

    with featurelens.open_store(store_path) as store:
        fill(store, 10, n_sequences=32)
    echo = _dry_run(cli, store_path, ECHO)
    builtin = _dry_run(cli, store_path, BUILTIN)
    assert echo["LLM calls"] == builtin["LLM calls"] == "3 (0 more answered from the cache)"  # 10 features, 4 a request
    assert echo["output tokens"] == builtin["output tokens"]
    assert "counted with words (the echo bills a token a word)" in echo["input tokens"]
    planned = int(echo["input tokens"].split()[0].replace(",", ""))
    # the live run bills what the dry run counted (the echo reports a token a word)
    ran = cli("explain", "--llm", ECHO, "--no-progress", "--store", store_path)
    assert ran.exit_code in (0, 3), ran.output  # 3: some echoed prompts do not read as answers
    with featurelens.open_store(store_path, read_only=True) as store:
        calls, billed = store.execute("SELECT count(*), sum(input_tokens) FROM llm_calls")[0]
    assert (calls, billed) == (3, planned)


def test_batch_api_through_the_example_client_writes_what_a_live_run_writes(example, tmp_path, cli):
    import featurelens

    live, batched = tmp_path / "live.duckdb", tmp_path / "batched.duckdb"
    for path in (live, batched):
        with featurelens.open_store(path) as store:
            fill(store, 6, n_sequences=16)
    args = ("--llm", ECHO, "--explainer", "example-keywords", "--no-progress")
    assert cli("explain", *args, "--store", live).exit_code == 0
    submitted = cli("explain", *args, "--batch-api", "--store", batched)
    assert submitted.exit_code == 0, submitted.output
    assert "submitted 6 requests for 6 features in 1 batch(es)" in submitted.output
    collected = cli("batches", "collect", "--store", batched)
    assert collected.exit_code == 0, collected.output
    query = "SELECT explanation_id, feature, text, llm FROM explanations ORDER BY feature"
    with featurelens.open_store(live, read_only=True) as a, featurelens.open_store(batched, read_only=True) as b:
        assert a.execute(query) == b.execute(query) and len(a.execute(query)) == 6
