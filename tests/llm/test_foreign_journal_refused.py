"""A response journal that is not what featurelens wrote (a hostile file planted beside
the store, or one damaged on disk): every labeling command refuses it in one sentence
that names the file and how to go on, exits 1, and leaves the store and the journal as
they were. It used to crash with KeyError,
AttributeError or TypeError tracebacks, or to delete a journal whose lines were not JSON."""

from __future__ import annotations

import pytest
from llm_fixtures import fill

import featurelens

JOURNALS = {
    "sent-without-id": '{"sent": {}}\n',
    "rows-not-a-dict": '{"rows": [1, 2, 3]}\n',
    "cache-row-without-key": '{"rows": {"llm_cache": [{"cache_key": 5}]}}\n',
    "call-with-bad-types": '{"rows": {"llm_calls": [{"call_id": "x", "input_tokens": "many"}]}}\n',
    "a-json-list": "[1, 2]\n",
    "binary-line": "\x00\x01garbage\n",
    "rejected-not-a-list": '{"rejected": 5}\n',
}


@pytest.mark.parametrize("name", sorted(JOURNALS))
def test_a_hostile_journal_is_refused_in_one_sentence(cli, store_path, monkeypatch, name):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-journal-faults-test-0123")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 2, n_sequences=16)
    journal = store_path.with_name(store_path.name + ".journal")
    journal.write_text(JOURNALS[name], encoding="utf-8")
    before = store_path.read_bytes()
    result = cli("explain", "--llm", "openai:x", "--provider-option", "base_url=http://127.0.0.1:9/v1",
                 "--max-attempts", "1", "--no-progress", "--store", store_path)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: The response journal {journal} cannot be replayed")
    assert f"mv {journal} {journal}.bad" in lines[0]
    assert journal.read_text(encoding="utf-8") == JOURNALS[name]
    assert store_path.read_bytes() == before


def test_a_journal_cut_at_its_last_line_is_still_replayed(cli, store_path, monkeypatch):
    """What a kill leaves (a last line without its newline) is not damage."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-journal-faults-test-0123")
    with featurelens.open_store(store_path) as store:
        fill(store, 1, n_sequences=16)
    journal = store_path.with_name(store_path.name + ".journal")
    from featurelens.llm.journal import ResponseJournal, replay

    writer = ResponseJournal(journal)
    writer.ended({"llm_cache": [{"cache_key": "k1", "response": '{"text": "an answer"}'}]})
    with open(journal, "ab") as handle:
        handle.write(b'{"rows": {"llm_ca')

    with featurelens.open_store(store_path) as store:
        assert replay(store) == 1
        assert store.execute("SELECT cache_key FROM llm_cache") == [("k1",)]
    assert not journal.exists()
