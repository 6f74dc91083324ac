"""Hostile requests to ``serve --model --api``: each gets a JSON error with the right
status (never a dropped connection or a 500), the model does not run for them, and the
server keeps answering."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any

import pytest

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def store(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from extract_calls import tiny_identity_store

    return tiny_identity_store(tiny_model_dir, tmp_path_factory.mktemp("serve-hostile"), HOOK)


@pytest.fixture
def server(store, tiny_backend):
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    srv = make_steering_server(store[0], "127.0.0.1", 0, model="unused", api=True, backend=tiny_backend)
    start_in_thread(srv)
    calls = {"n": 0}
    model = tiny_backend.model
    original = model.generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    model.generate = counting
    try:
        yield srv.server_address[1], store[1], calls
    finally:
        model.generate = original
        srv.shutdown()
        srv.server_close()
        srv.browser_data.close()


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        if body is not None and "Content-Length" not in sent:
            sent["Content-Length"] = str(len(body))
        for key, value in sent.items():
            connection.putheader(key, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(port: int, payload: Any, path: str = "/v1/completions", **headers: str) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, answer_headers, raw = request(port, "POST", path, body,
                                          {"Content-Type": "application/json", **headers})
    assert answer_headers.get("Content-Type") == "application/json", (status, raw[:200])
    return status, json.loads(raw)


def _error(answer: dict) -> str:
    message = answer["error"]["message"]
    assert "\n" not in message and "Traceback" not in message
    return message


GOOD = {"prompt": "The quick", "max_tokens": 2, "temperature": 0}


@pytest.mark.parametrize("payload,status,needle", [
    ({**GOOD, "max_tokens": 0}, 400, '"max_tokens" must be a whole number from 1'),
    ({**GOOD, "max_tokens": "5"}, 400, '"max_tokens" must be a whole number'),
    ({**GOOD, "max_tokens": 10**30}, 400, '"max_tokens" must be a whole number'),
    ({**GOOD, "temperature": float("nan")}, 400, '"temperature" must be a number'),
    ({**GOOD, "temperature": 1e309}, 400, '"temperature" must be a number'),
    ({**GOOD, "top_p": 0}, 400, '"top_p" must be a number above 0'),
    ({**GOOD, "top_p": 7}, 400, '"top_p" must be a number above 0'),
    ({**GOOD, "n": True}, 400, '"n" must be a whole number'),
    ({**GOOD, "prompt": "a" * 100_000}, 400, "but the model reads at most"),
])
def test_bad_generation_settings_are_refused_before_the_model_runs(server, payload, status, needle) -> None:
    port, _, calls = server
    got, answer = post(port, payload)
    assert (got, calls["n"]) == (status, 0)
    assert needle in _error(answer)


def test_a_strength_that_overflows_is_a_400_not_a_500(server, one_thread) -> None:
    port, did, _ = server
    got, answer = post(port, {**GOOD, "steering": [{"dictionary": did, "feature": 1, "strength": 1e308}]})
    assert got == 400 and "use a smaller strength" in _error(answer)


@pytest.mark.parametrize("headers,body,status,needle", [
    ({"Content-Type": "text/plain"}, json.dumps(GOOD).encode(), 415, "application/json"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"prompt=x", 415, "application/json"),
    ({"Content-Type": "application/json", "Content-Length": "abc"}, b"{}", 411, "Content-Length"),
    ({"Content-Type": "application/json", "Content-Length": "99999999999999999999"}, b"{}", 413,
     "bytes"),
    ({"Content-Type": "application/json"}, b"[" * 500_000 + b"]" * 500_000, 400, "not a JSON object"),
])
def test_malformed_bodies_get_json_errors(server, headers, body, status, needle) -> None:
    port, _, calls = server
    got, answer_headers, raw = request(port, "POST", "/v1/completions", body, headers)
    assert (got, answer_headers.get("Content-Type"), calls["n"]) == (status, "application/json", 0)
    assert needle in _error(json.loads(raw))


def test_the_api_keeps_the_browsers_host_guard(server) -> None:
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 must not run the model."""
    port, _, calls = server
    got, answer = post(port, GOOD, Host=f"evil.example:{port}")
    assert (got, calls["n"]) == (400, 0) and "addressed to it" in _error(answer)
    got, headers, raw = request(port, "GET", "/v1/models", headers={"Host": f"evil.example:{port}"})
    assert got == 400 and b"smollm" not in raw.lower() and "addressed to it" in _error(json.loads(raw))
    assert post(port, GOOD)[0] == 200  # the right Host still works


@pytest.mark.parametrize("path", ["/feature/{did}/99999999999999999999999999999",
                                  "/feature/{did}/%D9%A1%D9%A2", "/steer/{did}/99999999999999999999999999"])
def test_odd_feature_ids_are_not_found(server, path) -> None:
    from urllib.parse import quote

    port, did, calls = server
    got, _, raw = request(port, "GET", path.format(did=quote(did, safe="")))
    assert got == 404 and calls["n"] == 0 and b"Traceback" not in raw


def test_concurrent_requests_all_answered(server, one_thread) -> None:
    port, did, _ = server
    results: list[int] = []

    def one(i: int) -> None:
        payload = {**GOOD, "seed": i, "steering": [{"dictionary": did, "feature": i % 4, "strength": 4}]}
        results.append(post(port, payload)[0])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [200] * 6
    assert request(port, "GET", "/")[0] == 200


def test_the_steering_panel_refuses_a_seed_past_64_bits(server) -> None:
    from urllib.parse import quote, urlencode

    port, did, calls = server
    query = urlencode({"prompt": "The quick", "strength": "4", "tokens": "2", "seed": str(10**25)})
    got, headers, raw = request(port, "GET", f"/steer/{quote(did, safe='')}/1?{query}")
    assert (got, calls["n"]) == (400, 0) and b"seed must be a 64-bit whole number" in raw


def test_a_body_that_never_arrives_times_out_in_json(server, store, tiny_backend) -> None:
    import socket

    port, _, calls = server
    from featurelens.browser.steering_server import SteeringHandler

    handler_timeout = SteeringHandler.timeout
    SteeringHandler.timeout = 1
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"pro".encode())
            chunks = []
            while chunk := sock.recv(65536):  # the server closes the connection after answering
                chunks.append(chunk)
            answer = b"".join(chunks).decode()
    finally:
        SteeringHandler.timeout = handler_timeout
    assert answer.startswith("HTTP/1.0 408") and 'did not arrive in time' in answer and calls["n"] == 0
    assert request(port, "GET", "/")[0] == 200
