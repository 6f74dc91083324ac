"""A store file cut short (a copy that stopped half-way): every command says in one
sentence that the store is damaged, never a DuckDB traceback.
Depending on where the cut falls, DuckDB notices at open, while checking migrations, or
only when a job's query reaches a missing block; all three are probed."""

from __future__ import annotations

import pytest
from llm_fixtures import fill

import featurelens


@pytest.fixture(scope="module")
def whole_store(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("whole") / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill(store, 30, n_sequences=16)
    return path.read_bytes()


@pytest.mark.parametrize("kept", [0.02, 0.3, 0.7])
@pytest.mark.parametrize("command", ["explain", "sql"])
def test_a_truncated_store_is_one_sentence_naming_it_damaged(cli, tmp_path, monkeypatch, whole_store,
                                                           kept, command):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-damaged-store-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    path = tmp_path / "cut.duckdb"
    cut = whole_store[:int(len(whole_store) * kept)]
    path.write_bytes(cut)
    if command == "explain":
        result = cli("explain", "--llm", "openai:x", "--provider-option", "base_url=http://127.0.0.1:9/v1",
                     "--max-attempts", "1", "--no-progress", "--store", path)
    else:
        result = cli("sql", "SELECT count(*) FROM examples JOIN sequences USING (corpus_id, sequence_id)",
                     "--store", path)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: The store") and "is damaged and cannot be read" in lines[-1], lines
    assert "restore it from a backup" in lines[-1]
    assert "Traceback" not in result.output
    if kept < 0.5:  # refused at open: the file is exactly as it was
        assert path.read_bytes() == cut
