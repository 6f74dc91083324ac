"""A feature that never fired is not a failure (issue 23 item 3, issue 26 item 9): explain,
score and label skip it and say so, exit 0 when everything that can be done is done, and
resolve the failure rows earlier versions wrote for such features."""

from __future__ import annotations

import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.core.never_fired import clear_never_fired_failures, split_never_fired
from featurelens.core.selection import Selection, stream_records

#: fill_store's dead feature (fire_count 0, no examples).
DEAD = 3


@pytest.fixture
def wide(store_path, monkeypatch):
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill_store(store, n_features=12)
        # a second dead feature, like most of a real dictionary's tail
        store.execute("UPDATE features SET fire_count = 0, density = 0 WHERE feature = 7")
        store.execute("DELETE FROM examples WHERE feature = 7")
        store.execute("DELETE FROM explanations WHERE feature = 7")
    return store_path


def label(cli, store_path, *extra):
    return cli("label", "--explainer", "token-lookup", "--scorer", "token-check", "--no-progress",
               "--store", store_path, *extra)


def test_label_over_a_dictionary_with_dead_features_exits_0_and_names_them(cli, wide):
    result = label(cli, wide)
    assert result.exit_code == 0, result.output
    assert "2 never fired: skipped" in result.output
    with featurelens.open_store(wide) as store:
        assert store.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL")[0][0] == 0
        explained = {f for (f,) in store.execute(
            "SELECT feature FROM explanations WHERE explainer = 'token-lookup'")}
    assert explained == set(range(12)) - {DEAD, 7}
    again = label(cli, wide)
    assert again.exit_code == 0, again.output
    assert "2 never fired: skipped" in again.output


def test_failure_rows_written_for_dead_features_by_earlier_versions_are_resolved(cli, wide):
    with featurelens.open_store(wide) as store:
        store.execute(
            "INSERT INTO failures (run_id, stage, dictionary_id, feature, method, reason, attempts, "
            "updated_at) SELECT 'old', 'explain', dictionary_id, feature, "
            "'token-lookup by offline:none', 'feature has no stored examples to explain', 4, now() "
            "FROM features WHERE fire_count = 0")
        store.execute(  # a real failure of a feature that fired stays current
            "INSERT INTO failures (run_id, stage, dictionary_id, feature, method, reason, attempts, "
            "updated_at) SELECT 'old', 'explain', dictionary_id, 0, 'token-activations by openai:x', "
            "'HTTP 500', 1, now() FROM features WHERE feature = 0")
    result = cli("explain", "--explainer", "token-lookup", "--no-progress", "--store", wide)
    assert result.exit_code == 0, result.output
    assert "2 never fired: skipped" in result.output
    with featurelens.open_store(wide) as store:
        current = store.execute("SELECT feature, reason FROM failures WHERE resolved_at IS NULL")
    assert current == [(0, "HTTP 500")]


def test_a_selection_of_only_dead_features_says_there_is_nothing_to_do(cli, wide):
    for command in (["explain", "--explainer", "token-lookup"], ["score", "--scorer", "token-check"],
                    ["label", "--explainer", "token-lookup", "--scorer", "token-check"]):
        result = cli(*command, "--where", f"feature IN ({DEAD}, 7)", "--no-progress", "--store", wide)
        assert result.exit_code == 0, (command, result.output)
        assert "Nothing to do: all 2 selected features never fired." in result.output, command


def test_a_limit_counts_dead_features_among_the_first_n(wide):
    with featurelens.open_store(wide) as store:
        split = split_never_fired(store, Selection(limit=5))
        assert (split.fired, split.never_fired) == (4, 1)
        keys = [r.feature for chunk in stream_records(store, split.to_do, 2) for r in chunk]
        assert keys == [0, 1, 2, 4]
        split = split_never_fired(store, Selection(where="feature >= 3", limit=100))
        assert (split.fired, split.never_fired) == (7, 2)
        assert split_never_fired(store, Selection(where="feature > 100")).line() is None


def test_clearing_touches_only_the_stage_and_method_asked(wide):
    with featurelens.open_store(wide) as store:
        store.execute(
            "INSERT INTO failures (run_id, stage, dictionary_id, feature, method, reason, attempts, "
            "updated_at) SELECT 'old', stage, dictionary_id, 3, method, 'no examples', 1, now() "
            "FROM features, (VALUES ('explain', 'a by x'), ('explain', 'b by x'), ('score:token-check', "
            "'token-check by offline:none of explanation e')) v(stage, method) WHERE feature = 3")
        assert clear_never_fired_failures(store, Selection(), "explain", "a by x") == 1
        assert clear_never_fired_failures(store, Selection(where="feature <> 3"), "explain", "b by x") == 0
        assert clear_never_fired_failures(store, Selection(), "score:token-check",
                                          "token-check by offline:none") == 1
        left = store.execute("SELECT method FROM failures WHERE resolved_at IS NULL")
    assert left == [("b by x",)]


def test_batch_submission_skips_dead_features_and_says_so(store_path, monkeypatch):
    from batch_server import BatchServer

    from featurelens.labelers.explain import ExplainSpec, submit_explain

    server = BatchServer()
    try:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        with featurelens.open_store(store_path) as store:
            fill_store(store, n_features=6)
            submission = submit_explain(store, ExplainSpec("openai:gpt-4o-mini", "token-activations",
                                                           (("features_per_request", 1),)))
            asked = store.execute("SELECT CAST(requests AS VARCHAR) FROM batches")[0][0]
    finally:
        server.stop()
    assert "1 never fired: skipped" in submission.lines()
    import json

    assert submission.features == 5
    assert sorted(feature for _, feature, _ in json.loads(asked).values()) == [0, 1, 2, 4, 5]


def test_the_wide_store_labels_its_planted_words_and_skips_its_dead_tenth(cli, store_path, monkeypatch):
    from wide_store import WORDS, wide_store

    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    wide_store(store_path, n_features=100, n_sequences=64, chunk=40)
    result = cli("explain", "--explainer", "token-lookup", "--no-progress", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "10 never fired: skipped" in result.output
    with featurelens.open_store(store_path) as store:
        labels = dict(store.execute("SELECT feature, text FROM explanations"))
    assert sorted(labels) == [f for f in range(100) if f % 10]
    for feature, text in labels.items():
        assert text.startswith(f'"{WORDS[feature % len(WORDS)]}"'), (feature, text)
