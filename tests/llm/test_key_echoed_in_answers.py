"""A server that echoes the key where the earlier tests did not look (audit of issue 10,
item 9): inside a 200 answer (which becomes an explanation, a cached response and a
journal line), base64-encoded (as in a Basic header) in an error body, and a key set with
surrounding blanks (the SDK sends it stripped, so the stripped value is what comes back).
After each run the key is nowhere: not in the output, not in any file beside the store."""

from __future__ import annotations

import base64

import pytest
from hostile_server import HostileServer, answer, error
from llm_fixtures import fill
from quick_retries import quick_retries  # noqa: F401 - fixture

import featurelens
from featurelens.core.redaction import MASK, configured_secrets, redact

pytestmark = pytest.mark.usefixtures("quick_retries")

KEY = "hostile-Secret-Value-0123456789"  # not shaped like sk-..., so no pattern catches it

def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


BODIES = {
    "answer": lambda path: answer(path, f"Explanation: the key {KEY} in a label"),
    "answer-b64": lambda path: answer(path, f"Explanation: header Basic {_b64('user:' + KEY)}"),
    "error-b64": lambda path: error(path, 500, f"bad credentials {_b64('user:' + KEY)}"),
    "error-plain": lambda path: error(path, 400, f"Incorrect API key provided {KEY} for this org"),
}


def _leaks(store_path, output: str) -> list[str]:
    needles = [KEY.encode(), b"Secret-Value", _b64("user:" + KEY)[4:-4].encode()]
    found = [f"output holds {n!r}" for n in needles if n.decode() in output]
    for path in store_path.parent.iterdir():
        data = path.read_bytes()
        found += [f"{path.name} holds {n!r}" for n in needles if n in data]
    return found


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("body", sorted(BODIES))
def test_an_echoed_key_reaches_neither_the_store_nor_the_output(cli, store_path, monkeypatch, provider, body):
    monkeypatch.setenv("OPENAI_API_KEY", f"  {KEY}\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", f"  {KEY}\n")
    monkeypatch.setenv("FEATURELENS_LOAD_PLUGINS", "")
    with featurelens.open_store(store_path) as store:
        fill(store, 3, n_sequences=16)
    server = HostileServer(lambda n, path, headers, request: BODIES[body](path)).start()
    try:
        url = server.openai_url if provider == "openai" else server.anthropic_url
        result = cli("explain", "--option", "features_per_request=1", "--llm", f"{provider}:hostile", "--provider-option", f"base_url={url}",
                     "--max-attempts", "2", "--no-progress", "--store", store_path)
    finally:
        server.stop()
    assert server.keys and all(k == KEY for k in server.keys)  # what the SDK sent: stripped
    assert result.exit_code == (0 if body.startswith("answer") else 4), result.output
    assert _leaks(store_path, result.output) == []
    if body == "answer":  # the answer is kept, with the key masked
        with featurelens.open_store(store_path, read_only=True) as store:
            texts = {r[0] for r in store.execute("SELECT text FROM explanations")}
        assert texts == {f"the key {MASK} in a label"}


def test_encoded_forms_of_a_configured_key_are_masked_and_other_base64_is_not():
    secrets = configured_secrets({"OPENAI_API_KEY": KEY})
    for prefix in ("", "u:", "ab:", "xyz:"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode((prefix + KEY).encode()).decode()
            masked = redact(f"auth {encoded} end", secrets)
            assert MASK in masked and encoded not in masked, (prefix, masked)
    harmless = _b64("an ordinary sentence that is long enough")
    assert redact(harmless, secrets) == harmless
