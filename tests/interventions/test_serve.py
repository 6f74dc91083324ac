"""Steering from the browser (serve --model) and the OpenAI-compatible API (serve --api),
exercised over real HTTP with urllib and the real openai SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def store(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from extract_calls import tiny_identity_store

    return tiny_identity_store(tiny_model_dir, tmp_path_factory.mktemp("serve-steer"), HOOK)


@pytest.fixture
def server(store, tiny_backend):
    from featurelens.browser.server import url_of
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    srv = make_steering_server(store[0], "127.0.0.1", 0, model="unused", api=True, backend=tiny_backend)
    start_in_thread(srv)
    yield url_of(srv), store[1]
    srv.shutdown()
    srv.server_close()
    srv.browser_data.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_feature_page_panel_and_steer_page(server, one_thread) -> None:
    base, did = server
    status, page = _get(f"{base}feature/{quote(did, safe='')}/3")
    assert status == 200
    assert f'action="/steer/{quote(did, safe="")}/3"' in page and 'name="strength"' in page
    assert "No model is loaded" not in page
    query = urlencode({"prompt": "The quick", "strength": "6", "mode": "add", "tokens": "5", "seed": "1"})
    status, result = _get(f"{base}steer/{quote(did, safe='')}/3?{query}")
    assert status == 200, result
    assert 'class="baseline"' in result and 'class="steered"' in result and "Most changed tokens" in result
    assert _get(f"{base}steer/{quote(did, safe='')}/3?{query}")[1] == result  # same seed, same page
    status, bad = _get(f"{base}steer/{quote(did, safe='')}/3?prompt=x&strength=lots")
    assert status == 400 and "is not a number" in bad
    status, bad = _get(f"{base}steer/{quote(did, safe='')}/999?prompt=x&strength=2")
    assert status == 400 and "out of range" in bad


def test_plain_serve_says_no_model(store) -> None:
    from featurelens.browser.server import make_server, url_of
    from featurelens.testing.servers import start_in_thread

    srv = make_server(store[0], "127.0.0.1", 0)
    start_in_thread(srv)
    try:
        status, page = _get(f"{url_of(srv)}feature/{quote(store[1], safe='')}/3")
    finally:
        srv.shutdown()
        srv.server_close()
        srv.browser_data.close()
    assert status == 200 and "No model is loaded" in page and "featurelens serve --model" in page


def test_openai_client_steers(server, tiny_backend, one_thread) -> None:
    import openai

    base, did = server
    client = openai.OpenAI(base_url=f"{base}v1", api_key="not-needed", max_retries=0)
    assert [m.id for m in client.models.list().data] == [tiny_backend.model_id]
    plain = client.completions.create(model=tiny_backend.model_id, prompt="The quick", max_tokens=6,
                                      temperature=0)
    steering = [{"dictionary": did, "feature": 3, "strength": 40}]
    steered = client.completions.create(model=tiny_backend.model_id, prompt="The quick", max_tokens=6,
                                        temperature=0, extra_body={"steering": steering})
    again = client.completions.create(model=tiny_backend.model_id, prompt="The quick", max_tokens=6,
                                      temperature=0, extra_body={"steering": steering})
    assert steered.choices[0].text == again.choices[0].text != plain.choices[0].text
    assert steered.usage.prompt_tokens > 0 and steered.object == "text_completion"
    chat = client.chat.completions.create(
        model=tiny_backend.model_id, messages=[{"role": "user", "content": "Hello"}], max_tokens=4,
        temperature=0, extra_body={"steering": [{"dictionary": did, "feature": 5, "mode": "ablate"}]})
    assert chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str)
    with pytest.raises(openai.BadRequestError, match="out of range"):
        client.completions.create(model="m", prompt="x", max_tokens=2,
                                  extra_body={"steering": [{"dictionary": did, "feature": 999, "strength": 1}]})
    with pytest.raises(openai.BadRequestError, match="no dictionary 'nope'"):
        client.completions.create(model="m", prompt="x", max_tokens=2,
                                  extra_body={"steering": [{"dictionary": "nope", "feature": 1, "strength": 1}]})
    with pytest.raises(openai.BadRequestError, match="not a finite number"):
        client.completions.create(model="m", prompt="x", max_tokens=2,
                                  extra_body={"steering": [{"dictionary": did, "feature": 1, "strength": "big"}]})


def test_api_needs_the_flag_and_a_model(store, tiny_backend, cli) -> None:
    from featurelens.browser.server import url_of
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    srv = make_steering_server(store[0], "127.0.0.1", 0, model="unused", api=False, backend=tiny_backend)
    start_in_thread(srv)
    try:
        request = urllib.request.Request(f"{url_of(srv)}v1/completions", data=b'{"prompt": "x"}',
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request)
        assert raised.value.code == 404 and "--api" in json.loads(raised.value.read())["error"]["message"]
    finally:
        srv.shutdown()
        srv.server_close()
        srv.browser_data.close()
    result = cli("serve", "--api", "--store", store[0])
    assert result.exit_code != 0 and "--api needs --model" in result.output
