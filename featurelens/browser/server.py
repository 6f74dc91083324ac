"""The local feature browser: a standard-library HTTP server over a read-only store.

Routes: ``/`` (dictionaries), ``/dictionary/<id>?page=N&sort=..&order=..&explained=..&q=..``
(its features, sorted and filtered), ``/dictionary/<id>/overview`` (counts and histograms),
``/feature/<id>/<n>``, ``/search?q=...&page=N`` (explanation text), ``/sql?q=...``
(read-only SQL), ``/graphs`` and ``/graph/<id>`` (attribution graphs, drawn by
``static/graph.js`` from ``/graph/<id>/data.json``), ``/static/<file>`` (the stylesheet and
the graph script; served from the package, so the browser works offline). Only GET and HEAD
exist: nothing can change the store.

A SQL query from another site's page is refused (:func:`.request_guard.cross_site`);
pages may not be framed by another site (``frame-ancestors 'none'``, ``X-Frame-Options``);
a connection idle for :attr:`BrowserHandler.timeout` seconds is closed, and at most
:data:`MAX_CONNECTIONS` are served at once (:class:`BoundedServer`).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from featurelens.browser import request_guard
from featurelens.browser.feature_list import ListRequest
from featurelens.browser.graph_data import list_graphs, load_graph
from featurelens.browser.graph_page import graph_json, graph_page, graphs_page
from featurelens.browser.jobs import with_job_banner
from featurelens.browser.links import ServerLinks
from featurelens.browser.overview import load_overview, overview_page
from featurelens.browser.queries import BrowserData
from featurelens.browser.render import (
    dictionary_page,
    index_page,
    not_found_page,
    refused_page,
    search_page,
    sql_page,
)
from featurelens.browser.render_feature import feature_page
from featurelens.core.errors import FeaturelensError

_LINKS = ServerLinks()
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml"}


def static_files() -> dict[str, bytes]:
    """The browser's assets by file name (also copied into HTML exports)."""
    folder = resources.files("featurelens.browser") / "static"
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}


def _page_number(query: dict[str, list[str]]) -> int:
    return request_guard.page_number(query.get("page"))


class BrowserHandler(BaseHTTPRequestHandler):
    """Routes one request to a query and a renderer."""

    data: BrowserData  # set on the subclass made by make_server
    assets: dict[str, bytes]
    hosts: frozenset[str] = frozenset()  # Host header values answered (set by make_server)
    any_ip_literal = False
    server_version = "featurelens"
    can_intervene = False  # True where a model is loaded (serve --model): the graph page's edits

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the terminal shows the URL once, not every request."""

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch(head=True)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch(head=False)

    #: Seconds a connection may stay silent (before its request, or between requests)
    #: before it is closed: a half-open connection does not hold a thread for ever.
    timeout = 20.0

    def cross_site_refusal(self) -> str | None:
        """Why a GET that does work is refused as cross-site (see :mod:`.request_guard`)."""
        return request_guard.cross_site(self.headers, self.hosts, self.any_ip_literal)

    def host_refusal(self) -> str | None:
        """The DNS-rebinding guard: ``None`` for a Host this server answers, else why not."""
        if request_guard.host_allowed(self.headers.get("Host"), self.hosts, self.any_ip_literal):
            return None
        return ("This server answers only requests addressed to it by the name it was started "
                f"with ({', '.join(sorted(self.hosts))})")

    def _dispatch(self, head: bool) -> None:
        html_type = "text/html; charset=utf-8"
        refusal = self.host_refusal()
        if refusal is not None:
            status, ctype, body = HTTPStatus.BAD_REQUEST, html_type, refused_page(
                "Wrong address", f"{refusal}; open one of those URLs.", _LINKS).encode()
        else:
            try:
                url = urlsplit(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p]
                query = parse_qs(url.query)
                # Each query holds the store only while it runs (BrowserData.session), so a job
                # waiting for its turn gets the file between queries, never during rendering.
                status, ctype, body = self._route(parts, query)
                if ctype.startswith("text/html") and parts[:1] != ["static"]:
                    body = with_job_banner(body, self.data.running_jobs())
            except FeaturelensError as error:
                status, ctype, body = HTTPStatus.INTERNAL_SERVER_ERROR, html_type, \
                    not_found_page(str(error), _LINKS).encode()
            except Exception as error:  # noqa: BLE001 - a bad URL must get a page, not a dropped connection
                status, ctype, body = HTTPStatus.BAD_REQUEST, html_type, not_found_page(
                    f"This URL could not be read ({type(error).__name__}); start from the home page.",
                    _LINKS).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        html_type = "text/html; charset=utf-8"
        page = _page_number(query)
        if not parts:
            return HTTPStatus.OK, html_type, index_page(self.data.dictionaries(), _LINKS).encode()
        head = parts[0]
        if head == "static" and len(parts) == 2 and parts[1] in self.assets:
            suffix = Path(parts[1]).suffix
            return HTTPStatus.OK, _TYPES.get(suffix, "application/octet-stream"), self.assets[parts[1]]
        if head == "search" and len(parts) == 1:
            text = query.get("q", [""])[0].strip()
            if query.get("by", [""])[0] == "meaning" and text:
                found, note = self.data.search_meaning(text, page)
                return HTTPStatus.OK, html_type, search_page(text, found, _LINKS, meaning=True, note=note).encode()
            tokens = self.data.token_matches(text) if text and page == 0 else []
            return HTTPStatus.OK, html_type, search_page(text, self.data.search(text, page), _LINKS, tokens).encode()
        if head == "sql" and len(parts) == 1:
            sql = query.get("q", [""])[0]
            if not sql.strip():
                return HTTPStatus.OK, html_type, sql_page("", None, None, _LINKS).encode()
            cross = self.cross_site_refusal()
            if cross is not None:
                return HTTPStatus.FORBIDDEN, html_type, sql_page(
                    sql, None, f"The query was not run: {cross}.", _LINKS).encode()
            try:
                result, error = self.data.sql(sql), None
            except FeaturelensError as failure:
                result, error = None, str(failure)
            status = HTTPStatus.OK if error is None else HTTPStatus.BAD_REQUEST
            return status, html_type, sql_page(sql, result, error, _LINKS).encode()
        if head == "dictionary" and len(parts) in (2, 3):
            found = [d for d in self.data.dictionaries() if d["dictionary_id"] == parts[1]]
            if not found:
                return self._missing(f"There is no dictionary {parts[1]!r} in this store.")
            if len(parts) == 3 and parts[2] == "overview":
                overview = load_overview(self.data.query, found[0])
                return HTTPStatus.OK, html_type, overview_page(overview, _LINKS).encode()
            if len(parts) == 2:
                scorers = self.data.scorers(parts[1])
                request = ListRequest.from_query(query, scorers)
                listing = self.data.feature_list(parts[1], request, page)
                return HTTPStatus.OK, html_type, dictionary_page(found[0], listing, _LINKS, request,
                                                                 scorers).encode()
        if head == "graphs" and len(parts) == 1:
            return HTTPStatus.OK, html_type, graphs_page(list_graphs(self.data.query), _LINKS).encode()
        if head == "graph" and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "data.json"):
            graph = load_graph(self.data.query, parts[1], examples=3 if len(parts) == 3 else 0)
            if graph is None:
                return self._missing(f"There is no graph {parts[1]!r} in this store; see the list at /graphs.")
            if len(parts) == 3:
                intervene = _LINKS.graph_intervene(parts[1]) if self.can_intervene else None
                return HTTPStatus.OK, "application/json", graph_json(graph, _LINKS, intervene)
            page_html = graph_page(graph, _LINKS, _LINKS.graph_data(parts[1]), self.can_intervene)
            return HTTPStatus.OK, html_type, page_html.encode()
        if head == "feature" and len(parts) == 3 and request_guard.feature_index(parts[2]) is not None:
            did, index = parts[1], int(parts[2])
            data = self.data.feature(did, index)
            if data is None:
                return self._missing(f"Feature {index} of dictionary {did!r} is not in this store.")
            show_special = query.get("special", ["0"])[0] == "1"
            page_html = feature_page(data, _LINKS, self.data.neighbours(did, index), show_special)
            return HTTPStatus.OK, html_type, page_html.encode()
        return self._missing(f"No page at {self.path}; start from the home page.")

    def _missing(self, message: str) -> tuple[int, str, bytes]:
        return HTTPStatus.NOT_FOUND, "text/html; charset=utf-8", not_found_page(message, _LINKS).encode()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (the safe default for serve)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Connections served at once; more wait in the listen queue, so a flood of idle
#: connections holds at most this many threads (each closed after its idle timeout).
MAX_CONNECTIONS = 64


class BoundedServer(ThreadingHTTPServer):
    """A threading server with at most :data:`MAX_CONNECTIONS` handler threads: the accept
    loop waits for a free slot instead of starting a thread per connection."""

    max_connections = MAX_CONNECTIONS
    request_queue_size = 128

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=BrowserHandler.timeout):
            try:  # every slot held for a whole idle timeout: turn this one away
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (socket.timeout, ConnectionError)):
            return  # an idle client timed out or hung up: nothing to report
        super().handle_error(request, client_address)


def make_server(store_path: str | Path | None, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A ready (not yet serving) browser server; ``port=0`` picks a free port."""
    data = BrowserData(store_path)
    handler = type("Handler", (BrowserHandler,), {"data": data, "assets": static_files()})
    try:
        server = BoundedServer((host, port), handler)
    except OSError as error:
        data.close()
        raise FeaturelensError(
            f"Cannot listen on {host}:{port} ({error.strerror or error}); pick another --port "
            "(or --port 0 for any free one).") from None
    server.daemon_threads = True
    handler.hosts = request_guard.allowed_hosts(host, server.server_address[1])
    handler.any_ip_literal = host in ("0.0.0.0", "::", "")
    server.browser_data = data  # type: ignore[attr-defined]
    data.start_warming()
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
