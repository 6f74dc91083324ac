"""A server whose 200 answers are stand-ins for an answer (issue 26, item 3): ``null``,
filler, ``[object Object]``, a JSON error object, a proxy's HTML 502 page. Each must be a
counted failure: no explanation stored, the answer not kept in the cache (a rerun asks
again), nothing scored, exit status 4."""

from __future__ import annotations

import json

import pytest
from hostile_server import HostileServer, answer
from llm_fixtures import fill

import featurelens

GARBAGE = {
    "null": "null",
    "lorem": "Explanation: Lorem ipsum dolor sit amet, consectetur adipiscing elit",
    "object": "[object Object]",
    "json-error": json.dumps({"error": {"message": "The server is overloaded", "type": "server_error"}}),
    "html-502": ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                 "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"),
    "status-line": "HTTP/1.1 503 Service Unavailable",
}


@pytest.mark.parametrize("grouping", ["1", "4"])
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_stand_in_answer_is_a_failure_not_an_explanation(cli, store_path, monkeypatch, kind, grouping):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-garbage-answers-0123456789")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 4, n_sequences=16)
    text = GARBAGE[kind]

    def behave(n, path, headers, body):
        if grouping == "1":
            return answer(path, text)
        return answer(path, "\n".join(f"{i}: {text}" for i in range(1, 5)) if "\n" not in text else text)

    server = HostileServer(behave).start()
    try:
        result = cli("label", "--option", f"features_per_request={grouping}", "--llm", "openai:garbage",
                     "--scorer", "detection", "--provider-option", f"base_url={server.openai_url}",
                     "--max-attempts", "1", "--no-progress", "--store", store_path)
    finally:
        server.stop()
    assert result.exit_code == 4, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0
        assert store.execute("SELECT count(*) FROM scores")[0][0] == 0
        assert store.execute("SELECT count(*) FROM llm_cache")[0][0] == 0
        reasons = [r for (r,) in store.execute("SELECT reason FROM failures WHERE stage = 'explain'")]
    assert len(reasons) == 4 and all("not an explanation" in r or "no 'N: explanation'" in r for r in reasons), reasons
