"""API keys never reach the store, the terminal, logs or exports, even when a server
echoes them in an error body (both real SDKs, faked at the HTTP layer)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from llm_fixtures import FakeAPI, fill, use_test_explainer

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.redaction import MASK, install_log_redaction, redact
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.llm.engine import EngineSettings
from featurelens.llm.providers import build_provider
from featurelens.llm.retry import RetryPolicy

SECRET = "sk-test-SECRET-0123456789abcdef"
OTHER = "anthropic-key-ABCDEFGH12345678"  # configured, not shaped like an sk- key


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", OTHER)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _echo_body(provider: str, status: int, key: str) -> dict:
    """An error body that leaks the key three ways, as a misbehaving proxy might."""
    message = (f"Incorrect API key provided: {key}. Request had Authorization: Bearer {key} "
               f"and x-api-key: {key}")
    if provider == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    return {"error": {"message": message, "type": "invalid_request_error", "code": status}}


def _store_text(store) -> str:
    """Every value of every table as one string."""
    parts = []
    for table in store.tables():
        parts += [repr(row) for row in store.execute(f"SELECT * FROM {table}")]
    return "\n".join(parts)


@pytest.mark.parametrize("provider,key", [("openai", SECRET), ("anthropic", OTHER)])
@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_error_bodies_echoing_the_key_are_redacted(keys, store, monkeypatch, tmp_path: Path,
                                                   provider: str, key: str, status: int):
    use_test_explainer(monkeypatch)
    fill(store, 2)
    api = FakeAPI(default=lambda r: (status, _echo_body(provider, status, key), None))
    spec = f"{provider}:{'gpt-4o-mini' if provider == 'openai' else 'claude-haiku-4-5'}"
    llm = build_provider(spec, http_client=api.client())
    settings = EngineSettings(concurrency=1, progress=False, retry=RetryPolicy(2, 0.001, 0.002))
    raised = None
    try:
        explain_features(store, ExplainSpec(spec, "echo"), provider=llm, settings=settings)
    except FeaturelensError as error:
        raised = str(error)
    assert api.requests  # the key really was sent, and echoed back
    assert key in api.requests[0].headers.get("authorization", "") + api.requests[0].headers.get("x-api-key", "")
    text = _store_text(store)
    assert key not in text and "Bearer " + key[:6] not in text
    if status == 401:
        assert raised is not None and key not in raised
    else:
        errors = [r[0] for r in store.execute("SELECT error FROM llm_calls WHERE status = 'error'")]
        reasons = [r[0] for r in store.execute("SELECT reason FROM failures")]
        assert errors and reasons
        assert all(MASK in e for e in errors), errors
        assert all(MASK in r for r in reasons), reasons
        assert "Incorrect API key provided" in errors[0]  # the useful part of the body is kept


def test_parquet_export_redacts_a_store_written_before_redaction(keys, tmp_path: Path, cli):
    import polars as pl

    path = tmp_path / "old.duckdb"
    with featurelens.open_store(path) as store:
        fill(store, 1)
        # what an older featurelens stored: raw SQL, around Store.insert's redaction
        store.execute("INSERT INTO failures (stage, dictionary_id, feature, reason) "
                      "VALUES ('explain', 'd1', 0, ?)", [f"HTTP 500: key {SECRET}"])
    out = tmp_path / "pq"
    result = cli("export", "--format", "parquet", "--output", out, "--store", path)
    assert result.exit_code == 0, result.output
    exported = pl.read_parquet(out / "failures.parquet")
    assert exported["reason"].to_list() == [f"HTTP 500: key {MASK}"]
    assert all(SECRET.encode() not in f.read_bytes() for f in out.rglob("*") if f.is_file())


def test_cli_error_line_is_redacted(keys, cli, store_path: Path):
    featurelens.open_store(store_path).close()
    result = cli("sql", f'SELECT * FROM "{SECRET}"', "--store", store_path)
    assert result.exit_code == 1
    assert SECRET not in result.output and MASK in result.stderr


def test_log_records_are_redacted(keys, caplog):
    install_log_redaction()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("openai._base_client").debug("Request options: %s",
                                                       {"headers": {"Authorization": f"Bearer {SECRET}"}})
        logging.getLogger("anthropic").warning("sent x-api-key=%s", OTHER)
    assert SECRET not in caplog.text and OTHER not in caplog.text
    assert caplog.text.count(MASK) == 2


@pytest.mark.parametrize("text,expected", [
    ("Authorization: Bearer abc.def-ghi", f"Authorization: {MASK}"),
    ('{"authorization": "Bearer tok123456"}', f'{{"authorization": "{MASK}"}}'),
    ("X-Api-Key: k-123456789", f"X-Api-Key: {MASK}"),
    ("api_key=hunter2hunter2&x=1", f"api_key={MASK}&x=1"),
    ("token is sk-ant-api03-abcdefghijklmnop", f"token is {MASK}"),
    ("plain text with no secret", "plain text with no secret"),
])
def test_redact_patterns(text: str, expected: str):
    assert redact(text, []) == expected


def test_configured_values_need_no_pattern(monkeypatch):
    monkeypatch.setenv("MY_PROXY_TOKEN", "q9w8e7r6t5y4")
    assert redact("proxy said q9w8e7r6t5y4 twice: q9w8e7r6t5y4") == f"proxy said {MASK} twice: {MASK}"
    assert redact(None) is None and redact(3) == 3
