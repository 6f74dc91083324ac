"""A score's id is the hash of the JSON list ``[explanation_id, scorer, llm, options]``: ids
computed a chunk at a time are the ids of that formula, so stored scores are found again."""

from __future__ import annotations

import hashlib
import json

import pytest

from featurelens.scorers.score_jobs import score_id, score_ids


def formula(explanation_id, scorer, llm, options) -> str:
    text = json.dumps([explanation_id, scorer, llm, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@pytest.mark.parametrize("options", [{}, {"window": 32, "n_random": 50}, {"z": {"b": 1, "a": [2, 1]}, "a": None},
                                     {"path": "é↵\"\\"}])
def test_ids_of_a_chunk_are_the_formula(options):
    ids = ["0f" * 16, 'quote " and \\ back', "é↵\n", ""]
    expected = [formula(eid, "token-check", "openai:gpt-4o-mini", options) for eid in ids]
    assert score_ids(ids, "token-check", "openai:gpt-4o-mini", options) == expected
    assert [score_id(eid, "token-check", "openai:gpt-4o-mini", options) for eid in ids] == expected
    assert len(set(expected)) == len(expected)
