"""What the browser checks before it routes a request: the Host header, where the request
comes from, and URL numbers.

DNS rebinding: a web page on ``evil.example`` can re-point its own name at 127.0.0.1 and
then read ``http://evil.example:8765/`` with the user's browser, which sends
``Host: evil.example:8765``. Answering only the names the server was bound under (the
loopback names and the ``--host`` value, with the port) makes such reads fail. Numbers
in URLs are bounded, so an absurd page or feature id is a 404 page, never an exception.

Cross-site requests: any page the user visits can make their browser GET
``http://127.0.0.1:8765/sql?q=...`` (an ``<img>``, a form, a ``fetch``), which would run
work on this machine without the user asking. A GET that does work (a SQL query, a
steering generation) is therefore answered only when the browser says it comes from this
server's own pages or from the user (``Sec-Fetch-Site: same-origin`` or ``none``), and,
when an ``Origin`` header is sent, only when it names this server. Clients that send
neither (curl, scripts) are the user's own.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

#: Pages beyond this are treated as this one (empty listings), never an overflowing OFFSET.
MAX_PAGE = 10**7
#: Feature ids are int64 in the store; longer digit strings cannot name a feature.
MAX_FEATURE_DIGITS = 18


def _bracket(name: str) -> str:
    """IPv6 literals appear in Host headers in brackets."""
    try:
        return f"[{name}]" if ipaddress.ip_address(name).version == 6 else name
    except ValueError:
        return name


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values this server answers (lower case, with and without a default port)."""
    names = {"127.0.0.1", "localhost", "[::1]", _bracket(host.strip("[]").lower())}
    if host in ("0.0.0.0", "::", ""):  # every interface: the machine's own names too
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    values = {f"{name}:{port}" for name in names}
    if port == 80:
        values |= names
    return frozenset(values)


def host_allowed(header: str | None, allowed: frozenset[str], any_ip_literal: bool = False) -> bool:
    """True when ``header`` names this server. IP literals cannot be rebound, so a server
    listening on every interface may also answer any ``IP:port``."""
    if not header:
        return False
    value = header.strip().lower()
    if value in allowed:
        return True
    if any_ip_literal:
        name, _, port = value.rpartition(":")
        ports = {v.rpartition(":")[2] for v in allowed}
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return port in ports
    return False


def page_number(values: list[str] | None) -> int:
    """The ``page`` query parameter as a bounded non-negative int (0 when unreadable)."""
    text = (values or ["0"])[0].strip()
    if not (text.isascii() and text.isdigit()):
        return 0
    return min(int(text[:12]), MAX_PAGE)


def feature_index(text: str) -> int | None:
    """A URL's feature id as an int, or None when it cannot name a stored feature."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_FEATURE_DIGITS:
        return None
    return int(text)


def cross_site(headers: Any, allowed: frozenset[str], any_ip_literal: bool = False) -> str | None:
    """Why a request that does work must be refused as coming from another site, or ``None``."""
    site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return (f"the browser says this request came from another site (Sec-Fetch-Site: {site}); "
                "open the page from this server and run it there")
    origin = (headers.get("Origin") or "").strip().lower()
    if origin:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not host_allowed(rest.rstrip("/"), allowed, any_ip_literal):
            return (f"the request came from the page of another origin ({origin[:80]}); open the "
                    "page from this server and run it there")
    return None
