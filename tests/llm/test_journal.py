"""The response journal on its own (issue 10, item 1): what a kill leaves is replayed once."""

from __future__ import annotations

import featurelens
from featurelens.llm.journal import ResponseJournal, journal_path, replay


def _rows(key: str, call: str) -> dict:
    common = {"cache_key": key, "provider": "openai", "model": "m", "purpose": "explain",
              "dictionary_id": "d", "feature": 1, "run_id": "r"}
    return {"llm_cache": [{"cache_key": key, "response": '{"text": "Explanation: x"}'}],
            "llm_calls": [{**common, "call_id": call, "status": "ok", "attempts": 1}],
            "llm_attempts": [{**common, "attempt_id": f"{call}-1", "call_id": call, "attempt": 1,
                              "outcome": "ok"}]}


def _attempt(call: str, n: int) -> dict:
    return {"attempt_id": f"{call}-{n}", "call_id": call, "attempt": n, "cache_key": "k9",
            "provider": "openai", "model": "m", "purpose": "explain", "dictionary_id": "d",
            "feature": 9, "outcome": "sent", "run_id": "r"}


def test_a_killed_runs_answers_and_open_attempts_are_replayed_once(store_path):
    with featurelens.open_store(store_path) as store:
        journal = ResponseJournal(journal_path(store))
        journal.sent(_attempt("c1", 1))
        journal.ended(_rows("k1", "c1"))
        journal.sent(_attempt("c2", 1))  # in flight when the process dies
        journal.ended(_rows("k3", "c3"))
        journal.rejected(["k3"])  # answered, but unreadable: must not come back
        journal.sent(_attempt("c4", 1))
        # the process is killed here: no close, no commit; a torn last line too
        with open(journal_path(store), "ab") as handle:
            handle.write(b'{"rows": {"llm_cache": [{"cache_key": "k5"')
        assert replay(store) == 1
        assert store.execute("SELECT cache_key FROM llm_cache") == [("k1",)]
        assert store.execute("SELECT attempt_id, outcome FROM llm_attempts ORDER BY 1") == [
            ("c1-1", "ok"), ("c2-1", "interrupted"), ("c3-1", "ok"), ("c4-1", "interrupted")]
        assert not journal_path(store).exists()
        assert replay(store) == 0  # nothing twice


def test_commit_keeps_only_attempts_in_flight_and_close_removes_an_empty_journal(store_path):
    with featurelens.open_store(store_path) as store:
        path = journal_path(store)
        journal = ResponseJournal(path)
        journal.sent(_attempt("c1", 1))
        journal.ended(_rows("k1", "c1"))
        journal.sent(_attempt("c2", 1))
        journal.committed()
        lines = path.read_text().splitlines()
        assert len(lines) == 1 and '"c2-1"' in lines[0]
        journal.ended({"llm_attempts": [{**_attempt("c2", 1), "outcome": "retried"}]})
        journal.committed()
        journal.close()
        assert not path.exists()
