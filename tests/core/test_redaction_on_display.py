"""A key stored before redaction existed is still never shown: the browser's SQL page and
`featurelens sql` redact what they read back."""

from __future__ import annotations

from pathlib import Path

import duckdb

import featurelens
from featurelens.browser.queries import BrowserData

KEY = "sk-live-display-0123456789abcdefghij"


def _old_store_with_a_key(path: Path) -> None:
    with featurelens.open_store(path):
        pass
    con = duckdb.connect(str(path))  # as an old featurelens wrote it: no redaction on insert
    con.execute("INSERT INTO failures (stage, dictionary_id, feature, method, reason) VALUES "
                "('explain', 'd', 1, 'm', ?)", [f"HTTP 500: echo Authorization: Bearer {KEY}"])
    con.close()


def test_browser_sql_page_and_cli_redact_a_stored_key(tmp_path: Path, monkeypatch, cli) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    path = tmp_path / "old.duckdb"
    _old_store_with_a_key(path)
    data = BrowserData(path)
    try:
        result = data.sql("SELECT reason FROM failures")
    finally:
        data.close()
    shown = " ".join(str(v) for row in result.rows for v in row)
    assert KEY not in shown and "REDACTED" in shown
    for fmt in ("table", "csv", "json"):
        out = cli("sql", "SELECT reason FROM failures", "--format", fmt, "--store", path)
        assert out.exit_code == 0, out.output
        assert KEY not in out.output and "REDACTED" in out.output
