"""An OpenAI-compatible server that answers every request with a 500 (issue 26, item 7):
no feature may be counted as explained, the exit status is 4 (nothing succeeded) whatever
the grouping leaves in the last group, and a rerun against the same server does not call
the failures resolved."""

from __future__ import annotations

import pytest
from hostile_server import HostileServer, answer, error
from llm_fixtures import fill
from quick_retries import quick_retries  # noqa: F401 - fixture

import featurelens

pytestmark = pytest.mark.usefixtures("quick_retries")


def _explain(cli, store_path, url, *extra):
    return cli("explain", "--llm", "openai:broken", "--provider-option", f"base_url={url}",
               "--max-attempts", "1", "--no-progress", "--store", store_path, *extra)


@pytest.mark.parametrize("limit, grouping", [("1", ()), ("6", ()), ("6", ("--option", "features_per_request=5")),
                                             ("3", ("--option", "features_per_request=1"))])
def test_nothing_counts_as_explained_when_every_call_fails(cli, store_path, monkeypatch, limit, grouping):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-all-failing-0123456789")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 8, n_sequences=16)
    server = HostileServer(lambda n, path, headers, body: error(path, 500, "boom")).start()
    try:
        first = _explain(cli, store_path, server.openai_url, "--limit", limit, *grouping)
        again = _explain(cli, store_path, server.openai_url, "--limit", limit, *grouping)
    finally:
        server.stop()
    for result in (first, again):
        assert result.exit_code == 4, result.output
        assert f"{limit} failed" in result.output, result.output
        assert "0 resolved by this run" in result.output, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0
        open_, resolved = store.execute("SELECT count(*) FILTER (WHERE resolved_at IS NULL), "
                                        "count(resolved_at) FROM failures")[0]
    assert (open_, resolved) == (int(limit), 0)


def test_a_lone_feature_whose_line_is_unusable_is_a_failure(cli, store_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-all-failing-0123456789")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 8, n_sequences=16)
    server = HostileServer(lambda n, path, headers, body: answer(path, "1: null")).start()
    try:
        result = _explain(cli, store_path, server.openai_url, "--limit", "1")
    finally:
        server.stop()
    assert result.exit_code == 4, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0
        assert store.execute("SELECT count(*) FROM llm_cache")[0][0] == 0
