"""``featurelens serve --model M [--api]``: the browser with a model to steer.

The handler extends the read-only browser with ``GET /steer/<dictionary>/<feature>``
(the feature page's steering panel: baseline and steered text side by side) and, with
``--api``, an OpenAI-compatible endpoint: ``POST /v1/completions`` and
``POST /v1/chat/completions`` run the local model, with feature edits in a
``"steering"`` field of the body::

    {"prompt": "I think", "max_tokens": 20,
     "steering": [{"dictionary": "<dictionary id>", "feature": 123, "strength": 8}]}

(``"mode"``: add (default), clamp or ablate; ``"positions"``: all, prompt, generated.)
``GET /graph/<id>/intervene?ablate=NODE,...&steer=NODE=xF,...`` runs an attribution graph's
prompt with its feature nodes edited (the graph page's pinned nodes) and answers JSON: the
targets' and the most moved tokens' probabilities before and after
(:mod:`featurelens.interventions.graph_edits`).
The store stays read-only; one model call runs at a time (a lock), and dictionaries
are loaded once, on first use. Each request is bounded: ``max_tokens`` x ``n`` tokens at
most (:data:`~featurelens.browser.api_request.MAX_WORK_TOKENS`), generation stops after
:data:`GENERATION_DEADLINE_S` seconds, at most :data:`MAX_WAITING` requests wait for the
model and none waits longer than :data:`QUEUE_WAIT_S` (a 429 with ``Retry-After``
otherwise), so one slow request cannot hold the others for long. ``GET /steer/...`` runs
the model, so it is refused for requests from another site's pages.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any, Iterator

from featurelens.browser import request_guard
from featurelens.browser.api_request import ApiError, completion_params, read_json_body, strength
from featurelens.browser.links import ServerLinks
from featurelens.browser.server import BrowserHandler, make_server
from featurelens.browser.steering_panel import steer_result_page
from featurelens.core.cli.numbers import SEED_MAX, SEED_MIN
from featurelens.core.errors import FeaturelensError
from featurelens.interventions.edits import Edit
from featurelens.interventions.limits import check_length

#: The most tokens one request may generate (a browser click or an API call).
MAX_TOKENS = 512
#: Seconds one request's generation may run; it stops there with what it has.
GENERATION_DEADLINE_S = 60.0
#: Requests that may wait for the model at once; one more is answered 429.
MAX_WAITING = 16
#: Seconds a request waits for the model before it is answered 429.
QUEUE_WAIT_S = 30.0


class Busy(Exception):
    """The model is taken and the queue is full, or the wait ran out: answer 429."""


class SteeringLinks(ServerLinks):
    """Live links that also tell the feature page which model can steer."""

    def __init__(self, model_id: str):
        self.steering_model = model_id


class SteeringService:
    """The serve process's model, its dictionaries by store id, and a lock around them."""

    def __init__(self, backend: Any, data: Any):
        self.backend = backend
        self.data = data
        self.lock = threading.Lock()
        self._targets: dict[str, Any] = {}
        self._waiting = 0
        self._count = threading.Lock()
        self.max_waiting = MAX_WAITING
        self.queue_wait_s = QUEUE_WAIT_S
        self.deadline_s = GENERATION_DEADLINE_S

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the model for one request: wait in a bounded queue, for a bounded time."""
        with self._count:
            if self._waiting >= self.max_waiting:
                raise Busy(f"{self._waiting} requests are already waiting for the model")
            self._waiting += 1
        try:
            got = self.lock.acquire(timeout=self.queue_wait_s)
        finally:
            with self._count:
                self._waiting -= 1
        if not got:
            raise Busy(f"the model stayed busy for {self.queue_wait_s:g} s")
        try:
            yield
        finally:
            self.lock.release()

    def target(self, dictionary_id: str) -> Any:
        from featurelens.interventions.targets import (
            DICTIONARY_ROW_SQL,
            dictionary_row,
            load_target,
        )

        if dictionary_id not in self._targets:
            rows = self.data._dicts(DICTIONARY_ROW_SQL, [dictionary_id])
            if not rows:
                raise FeaturelensError(f"There is no dictionary {dictionary_id!r} in this store; use an id "
                                       "from the home page.")
            row = dictionary_row(tuple(rows[0].values()))
            if row["model_id"] != self.backend.model_id:
                raise FeaturelensError(
                    f"Dictionary {dictionary_id} reads {row['model_id']}, but this server loaded "
                    f"{self.backend.model_id}; restart serve with that --model.")
            self._targets[dictionary_id] = load_target(dictionary_id, backend=self.backend, row=row)
        return self._targets[dictionary_id]

    def editors(self, steering: Any, positions: str = "all") -> list[Any]:
        """FeatureEditors for an API ``steering`` list (one per dictionary)."""
        from featurelens.interventions.hooks import FeatureEditor

        if steering is None:
            return []
        if not isinstance(steering, list):
            raise FeaturelensError('"steering" must be a list of {"dictionary", "feature", "strength"} objects.')
        grouped: dict[str, list[Edit]] = {}
        for item in steering:
            if not isinstance(item, dict) or "dictionary" not in item or "feature" not in item:
                raise FeaturelensError('Each "steering" item needs "dictionary" and "feature" (and "strength" '
                                       'unless "mode" is "ablate").')
            mode = str(item.get("mode", "add"))
            value = item.get("strength", 0.0 if mode == "ablate" else None)
            feature = item["feature"]
            if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < 2**63:
                shown = repr(feature) if not isinstance(feature, int) or abs(feature) < 10**20 else "a huge number"
                raise FeaturelensError(f'"feature" must be a feature number (a whole number from 0), not {shown}.')
            if value is None:
                raise FeaturelensError(f'The edit of feature {feature} has no "strength"; add a number.')
            grouped.setdefault(str(item["dictionary"]), []).append(Edit(feature, mode, strength(value)))
        return [FeatureEditor(self.backend, self.target(d).dictionary, edits, positions=positions)
                for d, edits in grouped.items()]


def _chat_prompt(tokenizer: Any, messages: Any) -> str:
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        raise FeaturelensError('"messages" must be a non-empty list of {"role", "content"} objects.')
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m.get('role', 'user')}: {m['content']}\n" for m in messages) + "assistant:"


def complete(service: SteeringService, body: dict[str, Any], chat: bool) -> dict[str, Any]:
    """Answer one OpenAI-style request body (module docstring)."""
    from featurelens.interventions.generate import generate_ids

    if body.get("stream"):
        raise FeaturelensError("Streaming is not supported; send the request without \"stream\": true.")
    backend = service.backend
    prompt = _chat_prompt(backend.tokenizer, body.get("messages")) if chat else body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise FeaturelensError('"prompt" must be a non-empty string.')
    params = completion_params(body, MAX_TOKENS)
    max_tokens, temperature, top_p, n, seed = (params.max_tokens, params.temperature, params.top_p,
                                               params.n, params.seed)
    positions = str(body.get("steering_positions", "all"))
    ids = backend.tokenizer(prompt, return_tensors="pt", add_special_tokens=not chat).input_ids.to(backend.device)
    if ids.shape[1] == 0:
        raise FeaturelensError('"prompt" has no tokens.')
    check_length(backend, int(ids.shape[1]), max_tokens)
    eos = backend.tokenizer.eos_token_id
    with service.turn():
        editors = service.editors(body.get("steering"), positions)
        with ExitStack() as stack:
            for editor in editors:
                stack.enter_context(editor)
            new = generate_ids(backend, ids, max_tokens=max_tokens, seed=seed, temperature=temperature,
                               top_p=top_p, samples=n, stop_at_eos=True, max_time=service.deadline_s)
    choices, completion_tokens = [], 0
    for index, row in enumerate(new.tolist()):
        finish = "length"
        if eos is not None and eos in row:
            row, finish = row[:row.index(eos)], "stop"
        completion_tokens += len(row)
        text = backend.tokenizer.decode(row, skip_special_tokens=True)
        choices.append({"index": index, "finish_reason": finish,
                        **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})})
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": backend.model_id, "choices": choices,
            "usage": {"prompt_tokens": int(ids.shape[1]), "completion_tokens": completion_tokens,
                      "total_tokens": int(ids.shape[1]) + completion_tokens}}


class SteeringHandler(BrowserHandler):
    """The browser's routes, plus /steer/... and (with ``api``) the /v1 endpoints."""

    service: SteeringService
    links: SteeringLinks
    api: bool = False
    can_intervene = True  # the graph page offers edits of its pinned nodes
    #: Seconds a connection may sit idle (a body announced and never sent holds a thread, not the model).
    timeout = 60

    def _route(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        from featurelens.browser.render_feature import feature_page

        html_type = "text/html; charset=utf-8"
        if parts[:1] == ["feature"] and len(parts) == 3 and request_guard.feature_index(parts[2]) is not None:
            data = self.data.feature(parts[1], int(parts[2]))
            if data is not None and data.logits_pending:
                self._page_effects(data, parts[1], int(parts[2]))
            if data is not None:
                page = feature_page(data, self.links, self.data.neighbours(parts[1], int(parts[2])))
                return HTTPStatus.OK, html_type, page.encode()
        if parts[:1] == ["steer"] and len(parts) == 3 and request_guard.feature_index(parts[2]) is not None:
            return self._steer(parts[1], int(parts[2]), query)
        if parts[:1] == ["graph"] and len(parts) == 3 and parts[2] == "intervene":
            return self._intervene(parts[1], query)
        return super()._route(parts, query)

    def _page_effects(self, data: Any, dictionary_id: str, feature: int) -> None:
        """A pending feature's logit effects computed with the served model for this page
        (the store stays read-only, so they are not stored); when the dictionary cannot be
        loaded here or the model is busy, the page keeps its note on how to fill them."""
        from featurelens.core.lazy_logits import page_effects

        fold = bool((data.logits_pending or {}).get("fold_final_norm", True))
        try:
            with self.service.turn():
                target = self.service.target(dictionary_id)
                data.stats.update(page_effects(target.dictionary, feature, self.service.backend, fold))
        except (FeaturelensError, Busy, NotImplementedError):
            return
        data.logits_pending, data.logits_unstored = None, True

    def _intervene(self, graph_id: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        """The graph page's edits of pinned nodes, answered as JSON."""
        from dataclasses import asdict

        from featurelens.interventions.graph_edits import graph_row, intervene, parse_node_edits

        try:
            edits = parse_node_edits(query.get("ablate", []), query.get("steer", []))
            with self.service.lock:
                graph = graph_row(self.data.query, graph_id)
                target = self.service.target(graph["dictionary_id"])
                result = intervene(self.data.query, graph_id, edits, backend=target.backend, tset=target.dictionary)
        except FeaturelensError as error:
            return HTTPStatus.BAD_REQUEST, "application/json", json.dumps({"error": str(error)}).encode()
        return HTTPStatus.OK, "application/json", json.dumps(asdict(result)).encode()

    def _steer(self, dictionary_id: str, feature: int, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        from featurelens.interventions.edits import parse_edit
        from featurelens.interventions.generate import steer_compare

        def arg(name: str, default: str) -> str:
            return query.get(name, [default])[0].strip()

        html_type = "text/html; charset=utf-8"
        cross = self.cross_site_refusal()
        if cross is not None:
            page = steer_result_page(dictionary_id, feature, self.links, error=f"Not run: {cross}.")
            return HTTPStatus.FORBIDDEN, html_type, page.encode()
        try:
            mode = arg("mode", "add")
            strength = arg("strength", "8")
            spec = f"{feature}=ablate" if mode == "ablate" else f"{feature}={mode}:{strength}"
            if mode not in ("add", "clamp", "ablate"):
                raise FeaturelensError(f"Unknown mode {mode!r}; use add, clamp or ablate.")
            edit = parse_edit(spec)
            try:
                tokens, seed = int(arg("tokens", "30")), int(arg("seed", "0"))
            except ValueError:
                raise FeaturelensError("tokens and seed must be whole numbers.") from None
            if not 1 <= tokens <= MAX_TOKENS:
                raise FeaturelensError(f"tokens must be between 1 and {MAX_TOKENS}.")
            if not SEED_MIN <= seed <= SEED_MAX:
                raise FeaturelensError("seed must be a 64-bit whole number.")
            with self.service.turn():
                target = self.service.target(dictionary_id)
                result = steer_compare(target.backend, target.dictionary, [edit], arg("prompt", "I think"),
                                       max_tokens=tokens, seed=seed, samples=1)
        except Busy as busy:
            page = steer_result_page(dictionary_id, feature, self.links,
                                     error=f"The model is busy ({busy}); try again in a moment.")
            return HTTPStatus.TOO_MANY_REQUESTS, html_type, page.encode()
        except FeaturelensError as error:
            page = steer_result_page(dictionary_id, feature, self.links, error=str(error))
            return HTTPStatus.BAD_REQUEST, html_type, page.encode()
        page = steer_result_page(dictionary_id, feature, self.links, result=result)
        return HTTPStatus.OK, html_type, page.encode()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0].rstrip("/")
        routes = {"/v1/completions": False, "/v1/chat/completions": True}
        if not self._host_ok():
            return None
        if not self.api or path not in routes:
            return self._json(HTTPStatus.NOT_FOUND, _error(
                "No such endpoint; start serve with --api for /v1/completions and /v1/chat/completions."))
        try:
            body = read_json_body(self.headers, self.rfile)
            answer = complete(self.service, body, routes[path])
        except ApiError as error:
            self.close_connection = True  # an unread body must not be taken for the next request
            return self._json(error.status, _error(error.message))
        except Busy as busy:
            return self._json(HTTPStatus.TOO_MANY_REQUESTS, {"error": {
                "message": f"The model is busy ({busy}); retry after a few seconds.",
                "type": "rate_limit_error"}}, {"Retry-After": "5"})
        except FeaturelensError as error:
            return self._json(HTTPStatus.BAD_REQUEST, _error(str(error)))
        except Exception as error:  # noqa: BLE001 - the server answers, it does not die
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": {
                "message": f"featurelens failed on this request ({type(error).__name__}); please report it.",
                "type": "server_error"}})
        self._json(HTTPStatus.OK, answer)

    def _host_ok(self) -> bool:
        """The browser's DNS-rebinding guard, for the API too: a JSON 400 to any other Host."""
        refusal = self.host_refusal()
        if refusal is None:
            return True
        self.close_connection = True
        self._json(HTTPStatus.BAD_REQUEST, _error(f"{refusal}."))
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.api and self.path.rstrip("/") == "/v1/models":
            if not self._host_ok():
                return None
            model = self.service.backend.model_id
            return self._json(HTTPStatus.OK, {"object": "list", "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "featurelens"}]})
        super().do_GET()

    def _json(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


def make_steering_server(store_path: str | Path | None, host: str, port: int, *, model: str,
                         api: bool = False, dtype: str = "float32", device: str = "auto",
                         backend: Any = None) -> Any:
    """The browser server with ``model`` loaded for steering (and the /v1 API if ``api``)."""
    from featurelens.core.host.manager import create

    lm = backend or create("model_backend", "hf", model, dtype=dtype, device=device)
    server = make_server(store_path, host, port)
    service = SteeringService(lm, server.browser_data)  # type: ignore[attr-defined]
    base = server.RequestHandlerClass
    server.RequestHandlerClass = type("SteeringServerHandler", (SteeringHandler,), {
        "data": base.data, "assets": base.assets, "service": service,  # type: ignore[attr-defined]
        "links": SteeringLinks(lm.model_id), "api": bool(api),
        # the same Host guard as the plain browser: only the names it was started with
        "hosts": base.hosts, "any_ip_literal": base.any_ip_literal})  # type: ignore[attr-defined]
    server.steering_service = service  # type: ignore[attr-defined]
    return server
