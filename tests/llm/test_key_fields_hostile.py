"""A server that hides the key where only the answer text used to be scrubbed (issue 26,
item 1): spread over the log-prob tokens of a 200 answer, as a top alternative, and
hex-encoded in the text. Neither the store, nor the journal the run leaves, nor the
output may hold it afterwards, in the explain stage or the scoring stage."""

from __future__ import annotations

import re
import urllib.parse

from hostile_server import HostileServer, chat
from llm_fixtures import fill

import featurelens
from featurelens.core.host.protocols import LLMResponse, TokenLogprobs
from featurelens.core.redaction import MASK, configured_secrets
from featurelens.llm import journal
from featurelens.llm.answer_secrets import scrub

KEY = "hostileKeyInTokens0123456789"
NEEDLES = [KEY, KEY.encode().hex(), KEY.encode().hex().upper(), "KeyInTokens"]


def _with_logprobs(text: str) -> dict:
    body = chat(text)
    pieces = [" label", " hostile", "KeyIn", "Tokens01", "23456789", f" {KEY.encode().hex()}"]
    body["choices"][0]["logprobs"] = {"content": [
        {"token": p, "logprob": -0.5, "bytes": None,
         "top_logprobs": [{"token": KEY, "logprob": -1.0, "bytes": None},
                          {"token": p, "logprob": -0.5, "bytes": None}]} for p in pieces]}
    return body


def _behave(n: int, path: str, headers: dict, body: dict) -> tuple:
    last = (body.get("messages") or [{}])[-1].get("content", "")
    shown = len(re.findall(r"<example \d+>", last if isinstance(last, str) else ""))
    if shown:  # the detection scorer's answer: a 0/1 list
        return ("json", 200, _with_logprobs("[" + ",".join("1" for _ in range(shown)) + "]"), {})
    return ("json", 200, _with_logprobs(f"Explanation: numbers {KEY.encode().hex()} here"), {})


def _leaks(folder, output: str) -> list[str]:
    found = [f"output holds {n}" for n in NEEDLES if n in output]
    for path in folder.iterdir():
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name} holds {n}" for n in NEEDLES if n.encode() in data]
    return found


def test_a_key_in_logprob_tokens_or_hex_reaches_neither_store_nor_journal(cli, store_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    # keep the journal a killed run would leave, to read what it holds
    monkeypatch.setattr(journal.ResponseJournal, "committed", lambda self: None)
    monkeypatch.setattr(journal.ResponseJournal, "close", lambda self: None)
    monkeypatch.setattr(journal, "replay", lambda store: 0)
    with featurelens.open_store(store_path) as store:
        fill(store, 3, n_sequences=32, examples_per_feature=6)
    server = HostileServer(_behave).start()
    try:
        result = cli("label", "--option", "features_per_request=1", "--llm", "openai:hostile",
                     "--scorer", "detection", "--provider-option", f"base_url={server.openai_url}",
                     "--max-attempts", "1", "--no-progress", "--store", store_path)
    finally:
        server.stop()
    assert server.ok >= 6, result.output
    assert store_path.with_name(store_path.name + ".journal").exists()
    with featurelens.open_store(store_path, read_only=True) as store:
        cached = [r[0] for r in store.execute("SELECT CAST(response AS VARCHAR) FROM llm_cache")]
        texts = {r[0] for r in store.execute("SELECT text FROM explanations")}
    assert cached and all(MASK in c for c in cached)
    assert texts == {f"numbers {MASK} here"}, texts
    assert _leaks(store_path.parent, result.output) == []


def test_every_field_of_a_response_is_scrubbed():
    secrets = configured_secrets({"OPENAI_API_KEY": KEY})
    response = LLMResponse(
        text=f"a {urllib.parse.quote_plus(KEY)} b",
        output_logprobs=[TokenLogprobs("hostile", -1.0, {}), TokenLogprobs("KeyInTokens0123", -1.0, {}),
                         TokenLogprobs("456789", -1.0, {KEY: -2.0}), TokenLogprobs(" ok", -1.0, {})],
        prompt_logprobs=[TokenLogprobs(KEY.encode().hex().upper(), None, {})],
        raw={"choices": [{"message": {"tool_calls": [{"function": {"arguments": f'{{"k": "{KEY}"}}'}}]}}]})
    clean = scrub(response, secrets)
    assert KEY not in repr(clean) and KEY.encode().hex().upper() not in repr(clean)
    assert [t.token for t in clean.output_logprobs] == [MASK, MASK, MASK, " ok"]
    assert clean.output_logprobs[2].top == {MASK: -2.0}
    assert clean.text == f"a {MASK} b"
