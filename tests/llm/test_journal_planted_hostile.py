"""An attacker who can write beside the store but cannot read its journal key (issue 26,
items 8 and 10): a well-formed journal planted with answers for the exact requests the next
run will make is refused, never replayed into the cache; cache rows of the wrong shape are
no hits (the request is sent again) instead of crashing every later explain; a journal
path that is a folder or a dangling link is refused in one sentence and never written
through."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hostile_server import HostileServer, answer, error
from llm_fixtures import fill
from quick_retries import quick_retries  # noqa: F401 - fixture

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.llm.journal import ResponseJournal, key_path

pytestmark = pytest.mark.usefixtures("quick_retries")


def _explain(cli, store_path, url):
    return cli("explain", "--option", "features_per_request=1", "--llm", "openai:victim",
               "--provider-option", f"base_url={url}", "--max-attempts", "1", "--no-progress",
               "--store", store_path)


@pytest.fixture
def keys(cli, store_path, monkeypatch):
    """The cache keys the next explain will ask for, as an attacker learns them (the
    ``llm_calls`` rows of a run that failed, or the source code)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-journal-0123456789")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 4, n_sequences=16)
    server = HostileServer(lambda n, path, headers, body: error(path, 500, "down")).start()
    try:
        assert _explain(cli, store_path, server.openai_url).exit_code == 4
    finally:
        server.stop()
    with featurelens.open_store(store_path, read_only=True) as store:
        return [k for (k,) in store.execute("SELECT DISTINCT cache_key FROM llm_calls")]


def _genuine(n, path, headers, body):
    return answer(path, "Explanation: genuine answer")


def test_a_planted_well_formed_journal_is_refused(cli, store_path, keys):
    journal = store_path.with_name(store_path.name + ".journal")
    planted = "".join(json.dumps({"rows": {"llm_cache": [
        {"cache_key": k, "response": json.dumps({"text": "Explanation: attacker's label"})}]}}) + "\n"
        for k in keys)
    for lines in (planted, planted.replace("\n", "\t" + "0" * 64 + "\n")):  # unsigned, forged code
        journal.write_text(lines, encoding="utf-8")
        server = HostileServer(_genuine).start()
        try:
            result = _explain(cli, store_path, server.openai_url)
        finally:
            server.stop()
        assert result.exit_code == 1, result.output
        assert "cannot be replayed" in result.output and "Traceback" not in result.output
        assert server.seen == 0
        with featurelens.open_store(store_path, read_only=True) as store:
            assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0
            assert store.execute("SELECT count(*) FROM llm_cache")[0][0] == 0
    journal.unlink()
    server = HostileServer(_genuine).start()
    try:
        result = _explain(cli, store_path, server.openai_url)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert server.seen == len(keys)
    with featurelens.open_store(store_path, read_only=True) as store:
        assert {t for (t,) in store.execute("SELECT text FROM explanations")} == {"genuine answer"}
    assert stat.S_IMODE(os.stat(key_path(journal)).st_mode) == 0o600


def test_cache_rows_of_the_wrong_shape_are_asked_again_not_a_crash(cli, store_path, keys):
    shapes = ['{"text": 5}', "[]", '"text"', '{"text": "x", "output_logprobs": [1]}',
              '{"text": "x", "input_tokens": "many"}']
    with featurelens.open_store(store_path) as store:
        for key, shape in zip(keys, shapes):
            store.execute("INSERT INTO llm_cache (cache_key, response) VALUES (?, ?)", [key, shape])
    for _ in range(2):
        server = HostileServer(_genuine).start()
        try:
            result = _explain(cli, store_path, server.openai_url)
        finally:
            server.stop()
        assert result.exit_code == 0, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == len(keys)
        assert all(json.loads(r)["text"] for (r,) in store.execute("SELECT CAST(response AS VARCHAR) FROM llm_cache"))


@pytest.mark.parametrize("plant", ["folder", "dangling-link", "link-to-file"])
def test_a_journal_path_that_is_not_a_plain_file_is_refused_and_not_written_through(cli, store_path, keys, plant):
    journal = store_path.with_name(store_path.name + ".journal")
    target = store_path.parent / "victim.txt"
    if plant == "folder":
        journal.mkdir()
    elif plant == "dangling-link":
        journal.symlink_to(target)
    else:
        target.write_text("precious\n")
        journal.symlink_to(target)
    server = HostileServer(_genuine).start()
    try:
        result = _explain(cli, store_path, server.openai_url)
    finally:
        server.stop()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(journal) in lines[0], result.output
    assert server.seen == 0
    if plant == "dangling-link":
        assert not target.exists()
    elif plant == "link-to-file":
        assert target.read_text() == "precious\n"


def test_a_journal_key_others_can_read_is_refused(store_path):
    journal = store_path.with_name(store_path.name + ".journal")
    ResponseJournal(journal).close()
    os.chmod(key_path(journal), 0o644)
    with pytest.raises(FeaturelensError, match="chmod 600"):
        ResponseJournal(journal)
