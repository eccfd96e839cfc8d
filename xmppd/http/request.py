"""Plain request/response values passed between the ASGI app and its handlers.

The app reads the body (with a size cap), resolves the real client behind trusted
proxies and answers CORS; a handler such as BOSH's only sees an :class:`HttpRequest`
and returns an :class:`HttpResponse` — no ASGI details, easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    #: Path below the configured prefix, e.g. ``/http-bind``.
    path: str
    query: str
    #: Lower-cased header names; repeated headers joined with ", ".
    headers: dict[str, str]
    body: bytes
    #: The real client address (after trusted-proxy resolution).
    client_ip: str
    #: HTTPS end to end as far as we can tell (TLS here, or a trusted proxy said so).
    secure: bool
    #: The ``Origin`` header when it passed the allow-list (or was same-origin).
    origin: str | None = None
    #: HTTP version as hypercorn reports it ("1.1", "2").
    http_version: str = "1.1"
    #: Came through a proxy (trusted or not): the client gets no loopback exemption.
    proxied: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(slots=True)
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs to a dict; repeated names are joined as RFC 9110 allows."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out
