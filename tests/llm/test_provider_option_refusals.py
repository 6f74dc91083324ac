"""Provider options a user can get wrong, refused at once in one sentence (issue 26, item
10): a timeout of nan, inf, -1 or 0, a base URL that is not http(s), one whose user name or
password holds an unencoded '/', or one with an impossible port. None of them may reach the
retry loop (seconds of retries, then blamed on the server) or print a traceback."""

from __future__ import annotations

import pytest
from llm_fixtures import fill

import featurelens


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("option, needle", [
    ("timeout=nan", "timeout option must be a number of seconds"),
    ("timeout=inf", "timeout option must be a number of seconds"),
    ("timeout=-1", "timeout option must be a number of seconds"),
    ("timeout=0", "timeout option must be a number of seconds"),
    ("base_url=ftp://x", "is not an http:// or https:// address"),
    ("base_url=http://us/er:pa/ss@127.0.0.1:9/v1", "must be written %2F"),
    ("base_url=http://127.0.0.1:99999/v1", "has a port that is not a number"),
    ("base_url=http:///v1", "names no host"),
])
def test_a_bad_provider_option_is_one_sentence_before_any_request(cli, store_path, monkeypatch, provider,
                                                                  option, needle):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider-options-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-provider-options-0123456789")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 2, n_sequences=16)
    result = cli("explain", "--llm", f"{provider}:m", "--provider-option", option, "--no-progress",
                 "--store", store_path)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM llm_attempts")[0][0] == 0
