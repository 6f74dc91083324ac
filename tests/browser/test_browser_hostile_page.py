"""``featurelens serve`` against a hostile page and a hostile client (issue 26, items 4
and 10): a SQL-box query whose result is one huge value, the same query sent by another
site's page through the user's browser, hundreds of connections that never send a byte,
an attempt to frame the pages, and a request under a foreign Host name."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse

import pytest
from synthetic_store import filled_store

from featurelens.browser.server import MAX_CONNECTIONS, make_server, url_of
from featurelens.testing.servers import start_in_thread


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    path = filled_store(tmp_path_factory.mktemp("hostile-page") / "store.duckdb", 10)
    server = make_server(path, "127.0.0.1", 0)
    server.RequestHandlerClass.timeout = 1.0  # idle seconds, shortened for the test
    start_in_thread(server)
    try:
        yield server, urllib.parse.urlsplit(url_of(server))
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()


def fetch(base, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _sql(text: str) -> str:
    return "/sql?" + urllib.parse.urlencode({"q": text})


def test_a_huge_value_is_cut_inside_the_database_not_sent_whole(served):
    _, base = served
    status, _, body = fetch(base, _sql("SELECT repeat('x', 40000000) AS big, 1 AS n"))
    assert status == 200
    assert len(body) < 100_000, len(body)  # a 40 MB value, cut to one cell's share
    assert b"xxxx" in body


def test_a_wide_result_is_bounded(served):
    _, base = served
    columns = ", ".join(f"repeat('y', 1999) AS c{i}" for i in range(300))
    status, _, body = fetch(base, _sql(f"SELECT {columns} FROM range(500)"))
    assert status == 200 and len(body) < 3_000_000, len(body)
    assert b"first" in body  # told that rows were left out


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "https://evil.example"}, {"Origin": "null"}])
def test_a_query_sent_by_another_sites_page_is_not_run(served, headers):
    _, base = served
    status, _, body = fetch(base, _sql("SELECT 'ran' || 'ran' AS marker"), headers)
    assert status == 403 and b"ranran" not in body and b"another" in body
    status, _, body = fetch(base, _sql("SELECT 'ran' || 'ran' AS marker"), {"Sec-Fetch-Site": "same-origin"})
    assert status == 200 and b"ranran" in body


def test_pages_refuse_to_be_framed(served):
    _, base = served
    for path in ("/", "/sql", "/search?q=x"):
        _, headers, _ = fetch(base, path)
        assert headers.get("X-Frame-Options") == "DENY"
        assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", "")


def test_idle_connections_time_out_and_do_not_hold_a_thread_each(served):
    _, base = served
    before = threading.active_count()
    idle = [socket.create_connection((base.hostname, base.port)) for _ in range(3 * MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= MAX_CONNECTIONS + 2
        idle[0].settimeout(10)
        assert idle[0].recv(10) == b""  # closed by the server after its idle timeout
        status, _, _ = fetch(base, "/")  # the server still answers
        assert status == 200
    finally:
        for connection in idle:
            connection.close()


def test_a_refused_host_gets_a_page_that_says_so(served):
    _, base = served
    status, _, body = fetch(base, "/", {"Host": f"evil.example:{base.port}"})
    assert status == 400
    assert b"<h1>Wrong address</h1>" in body and b"Not found" not in body
