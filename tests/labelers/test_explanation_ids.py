"""An explanation's id is the hash of the JSON list ``[dictionary_id, feature, explainer, llm,
options]``: ids computed a chunk at a time are that formula's, so stored explanations are
found again by every version that computes them either way."""

from __future__ import annotations

import hashlib
import json

import pytest

from featurelens.labelers.explain import explanation_id, explanation_ids


def formula(dictionary_id, feature, explainer, llm, options) -> str:
    text = json.dumps([dictionary_id, feature, explainer, llm, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@pytest.mark.parametrize("options", [{}, {"n_examples": 20, "window": 32}, {"z": {"b": 1, "a": [2, 1]}, "a": None},
                                     {"path": "é↵\"\\"}])
def test_ids_of_a_chunk_are_the_formula(options):
    keys = [("smollm2-l6-topk", 0), ("smollm2-l6-topk", 1_048_575), ('quote " and \\ back', 7), ("é↵\n", -1), ("", 3)]
    expected = [formula(d, f, "token-lookup", "offline:none", options) for d, f in keys]
    assert explanation_ids(keys, "token-lookup", "offline:none", options) == expected
    assert [explanation_id(d, f, "token-lookup", "offline:none", options) for d, f in keys] == expected
    assert len(set(expected)) == len(expected)


def test_a_known_id_is_unchanged():
    """The id the code before chunked ids gave for this feature (stores hold such ids)."""
    assert explanation_id("d", 5, "token-lookup", "offline:none", {}) == "88c59b383770bbb423bc16628df5e0e4"
    assert explanation_ids([], "token-lookup", "offline:none", {}) == []
