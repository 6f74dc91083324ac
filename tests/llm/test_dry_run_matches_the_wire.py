"""``--dry-run`` against what a run sends: simulation by prompt
log-probs asks each request for ``max_tokens=1`` on the wire (OpenAI-compatible servers
refuse 0), so the dry run's output bound must count that token: it said "at most 0"."""

from __future__ import annotations

import re

from hostile_server import HostileServer, answer
from llm_fixtures import fill

import featurelens


def test_the_dry_run_output_bound_covers_the_tokens_the_requests_ask_for(cli, store_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dry-run-faults-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 5, n_sequences=32, examples_per_feature=10)
    bodies: list[dict] = []

    def behave(n, path, headers, body):
        bodies.append({"path": path, **body})
        return answer(path, "Explanation: numbers")

    server = HostileServer(behave).start()
    try:
        common = ["--llm", "openai:gpt-4o-mini", "--provider-option", f"base_url={server.openai_url}",
                  "--no-progress", "--store", store_path]
        assert cli("explain", "--option", "features_per_request=1", *common).exit_code == 0
        dry = cli("score", "--scorer", "simulation", "--option", "adaptive=false", "--dry-run", *common)
        bodies.clear()
        cli("score", "--scorer", "simulation", "--option", "adaptive=false", *common)
    finally:
        server.stop()
    assert dry.exit_code == 0, dry.output
    calls = int(re.search(r"LLM calls:\s+([\d,]+)", dry.output)[1].replace(",", ""))
    bound = int(re.search(r"output tokens:\s+at most ([\d,]+)", dry.output)[1].replace(",", ""))
    sent = [b for b in bodies if b["path"].endswith("/completions") and "/chat/" not in b["path"]]
    assert len(sent) == calls and calls > 0, (calls, [b["path"] for b in bodies])
    assert bound == sum(b["max_tokens"] for b in sent), (bound, [b["max_tokens"] for b in sent])
