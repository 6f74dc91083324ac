"""serve refuses foreign Host headers (DNS rebinding) and answers every odd URL with a page."""

from __future__ import annotations

import http.client
import random
import urllib.parse

import pytest
from synthetic_store import filled_store, serving

DID = "smollm2-l6-topk"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    path = filled_store(tmp_path_factory.mktemp("guard") / "store.duckdb", 30)
    with serving(path) as url:
        yield urllib.parse.urlsplit(url)


def fetch(base, path: str, host: str | None = None, method: str = "GET") -> tuple[int, str, str]:
    """One request on a fresh connection; a dropped connection raises here."""
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=20)
    try:
        connection.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


def test_bound_names_are_answered(base):
    for host in (f"127.0.0.1:{base.port}", f"localhost:{base.port}", f"LOCALHOST:{base.port}"):
        status, _, body = fetch(base, "/", host)
        assert status == 200, host
        assert DID in body


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:{port}", "127.0.0.1:1",
                                  "localhost.evil.example:{port}", "", "127.0.0.1.evil:{port}"])
def test_foreign_host_headers_get_400(base, host: str):
    for path in ("/", f"/dictionary/{DID}", "/sql?q=SELECT+1", "/static/style.css"):
        status, ctype, body = fetch(base, path, host.format(port=base.port))
        assert status == 400, (host, path)
        assert ctype.startswith("text/html") and "answers only requests addressed to it" in body
        assert DID not in body


@pytest.mark.parametrize("path,expected", [
    (f"/feature/{DID}/%C2%B2", 404),                       # '²' is a digit to str.isdigit()
    (f"/feature/{DID}/" + "9" * 5000, 404),                # past Python's int-string limit
    (f"/feature/{DID}/99999999999999999999", 404),
    ("/search?page=99999999999999999999999", 200),
    (f"/dictionary/{DID}?page=99999999999999999999999", 200),
    (f"/dictionary/{DID}?page=-5", 200),
    ("/search?q=%FF%FE&page=%C2%B2", 200),
    ("/%00/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/static/../../pyproject.toml", 404),
])
def test_odd_urls_get_a_status_page(base, path: str, expected: int):
    status, ctype, body = fetch(base, path)
    assert status == expected
    assert ctype.startswith("text/html") and "<html" in body.lower()


def test_route_fuzz_never_drops_a_connection(base):
    rng = random.Random(10)
    heads = ["", "feature", "dictionary", "search", "sql", "static", "x"]
    atoms = [DID, "0", "1", "29", "30", "-1", "²", "٣", "9" * 40, "%", "%zz", "..", "a b", "\x00",
             "é", "🙂", "'", '"', "<script>", "?", "#", ";", "page=1", "q=%", "SELECT", "%C0%AF"]
    paths = []
    for _ in range(150):
        parts = [rng.choice(heads)] + [rng.choice(atoms) for _ in range(rng.randint(0, 3))]
        path = "/" + "/".join(parts)
        if rng.random() < 0.5:
            path += "?" + "&".join(f"{rng.choice(['page', 'q', 'x'])}={rng.choice(atoms)}"
                                   for _ in range(rng.randint(1, 3)))
        paths.append(urllib.parse.quote(path, safe="/?=&%"))
    for path in paths:
        status, ctype, body = fetch(base, path)
        assert status in (200, 400, 404), path
        assert ctype.startswith(("text/html", "text/css", "text/javascript", "image/")) and body, path
    status, _, _ = fetch(base, "/", method="POST")
    assert status == 501  # the standard library's answer to a method the browser lacks
