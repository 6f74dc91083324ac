"""``serve --model --api`` against a hostile client or page (issue 26, item 5): requests
whose work has no bound, options the endpoint would silently ignore, a strength of 400
digits, a 2^40 Content-Length, a slow request the others queue behind, and a cross-site
page that makes the user's browser GET ``/steer/...``. Each is refused with the right
status before the model runs, or bounded (a deadline, a queue with a limit)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.interventions.test_serve_api_hostile_requests import GOOD, _error, post, request
from tests.interventions.test_serve_api_hostile_requests import store as store  # noqa: F401 - fixture


@pytest.fixture
def served(store, tiny_backend):  # noqa: F811 - the fixture above
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    srv = make_steering_server(store[0], "127.0.0.1", 0, model="unused", api=True, backend=tiny_backend)
    start_in_thread(srv)
    seen: list[dict[str, Any]] = []
    model = tiny_backend.model
    original = model.generate
    slow = threading.Event()

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        if slow.is_set():
            time.sleep(2.0)  # the hostile slow request: holds the model
        return original(*args, **kwargs)

    model.generate = watched
    try:
        yield srv, srv.server_address[1], store[1], seen, slow
    finally:
        model.generate = original
        srv.shutdown()
        srv.server_close()
        srv.browser_data.close()


@pytest.mark.parametrize("extra, needle", [
    ({"max_tokens": 512, "n": 16}, '"max_tokens" x "n" is 8192'),
    ({"logprobs": 5}, '"logprobs" is not supported'),
    ({"logprobs": True, "top_logprobs": 3}, '"logprobs" is not supported'),
    ({"stop": ["\n"]}, '"stop" is not supported'),
    ({"stop": "."}, '"stop" is not supported'),
    ({"echo": True}, '"echo" is not supported'),
])
def test_unbounded_or_unimplemented_requests_are_refused_before_the_model_runs(served, extra, needle):
    _, port, _, seen, _ = served
    got, answer = post(port, {**GOOD, **extra})
    assert (got, len(seen)) == (400, 0)
    assert needle in _error(answer)


def test_a_400_digit_strength_or_feature_is_a_400(served):
    _, port, did, seen, _ = served
    for item in ({"dictionary": did, "feature": 1, "strength": int("9" * 400)},
                 {"dictionary": did, "feature": int("9" * 400), "strength": 4}):
        raw = json.dumps({**GOOD, "steering": [item]}).encode()
        got, answer = post(port, raw)
        assert got == 400 and len(seen) == 0, answer
        assert "not a finite number" in _error(answer) or "must be a feature number" in _error(answer)


def test_a_2_to_the_40_content_length_is_413(served):
    _, port, _, seen, _ = served
    got, headers, raw = request(port, "POST", "/v1/completions", b"{}",
                                {"Content-Type": "application/json", "Content-Length": str(2**40)})
    assert (got, len(seen)) == (413, 0)
    assert "bytes" in _error(json.loads(raw))


def test_generation_carries_a_deadline(served):
    srv, port, _, seen, _ = served
    assert post(port, GOOD)[0] == 200
    assert seen[-1].get("max_time") == srv.steering_service.deadline_s > 0


def test_a_slow_request_does_not_hold_the_others_past_the_queue(served):
    srv, port, _, seen, slow = served
    service = srv.steering_service
    service.queue_wait_s, service.max_waiting = 0.3, 1
    slow.set()
    first: list[int] = []
    holder = threading.Thread(target=lambda: first.append(post(port, GOOD)[0]))
    holder.start()
    while not seen:  # the slow request holds the model now
        time.sleep(0.01)
    got, answer = post(port, {**GOOD, "max_tokens": 1})
    assert got == 429 and "busy" in answer["error"]["message"]
    holder.join(60)
    slow.clear()
    assert first == [200]
    assert post(port, GOOD)[0] == 200  # the model is free again


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "http://evil.example"}])
def test_a_cross_site_get_does_not_run_the_model(served, headers):
    from urllib.parse import quote

    _, port, did, seen, _ = served
    path = f"/steer/{quote(did, safe='')}/1?strength=4&tokens=3"
    got, _, raw = request(port, "GET", path, headers=headers)
    assert (got, len(seen)) == (403, 0), raw[:300]
    got, _, raw = request(port, "GET", path, headers={"Sec-Fetch-Site": "same-origin"})
    assert got == 200 and len(seen) >= 1
