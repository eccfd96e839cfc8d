"""XEP-0156 connection discovery: ``/.well-known/host-meta`` (XRD) and ``host-meta.json`` (JRD).

A browser client given only an account's domain (Converse.js) fetches
``https://<domain>/.well-known/host-meta`` or ``host-meta.json`` and connects to the
WebSocket or BOSH URL it names. The URLs are absolute. With ``http.public_url`` set they
start with it (the address browsers use, whatever the reverse proxy does with paths);
otherwise they are built from the request: ``https``/``wss`` when the request came over
TLS or a *trusted* proxy says so (``xmppd.http.proxy``), its ``Host`` header (checked to be
a host name or address with an optional port, never echoed otherwise), and
``http.path_prefix``. Only the transports that are switched on are listed; with none,
there is nothing to discover (404).

The documents say nothing secret and need no cookies, so every origin may read them
(``Access-Control-Allow-Origin: *``, RFC 6415 §2) — a page on the forum's origin
discovering the chat's endpoints on another one is the point.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from lxml import etree

from xmppd.http.request import HttpResponse

HOST_META_PATH = "/.well-known/host-meta"
HOST_META_JSON_PATH = "/.well-known/host-meta.json"
#: Both documents live at the root of the host (RFC 8615), whatever ``path_prefix`` is.
PATHS = (HOST_META_PATH, HOST_META_JSON_PATH)

XRD_NS = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
WEBSOCKET_REL = "urn:xmpp:alt-connections:websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"

XRD_TYPE = "application/xrd+xml; charset=utf-8"
JRD_TYPE = "application/json"
#: Browsers and proxies may keep the documents a while: the endpoints rarely move.
CACHE_CONTROL = "public, max-age=300"
CORS_HEADERS = [("access-control-allow-origin", "*")]
PREFLIGHT_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
    ("access-control-max-age", "86400"),
]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")


@dataclass(frozen=True, slots=True)
class Link:
    """One XRD/JRD link: a connection method (``rel``) and its URL."""

    rel: str
    href: str


def request_base(secure: bool, host: str | None, prefix: str) -> str | None:
    """``scheme://host/prefix`` of the request, or None when its ``Host`` is unusable."""
    if not host or len(host) > 261 or not _HOST.fullmatch(host):
        return None
    return f"{'https' if secure else 'http'}://{host.lower()}{prefix}"


def links(base: str, *, websocket: bool, bosh: bool) -> list[Link]:
    """The enabled endpoints below ``base`` (``http[s]://host[/prefix]``, no trailing /)."""
    found: list[Link] = []
    if websocket:
        scheme, rest = base.split("://", 1)
        ws_scheme = "wss" if scheme == "https" else "ws"
        found.append(Link(WEBSOCKET_REL, f"{ws_scheme}://{rest}/xmpp-websocket"))
    if bosh:
        found.append(Link(BOSH_REL, f"{base}/http-bind"))
    return found


def xrd(items: list[Link]) -> bytes:
    """The XRD document (RFC 6415 §3, XEP-0156 §3)."""
    root = etree.Element("{%s}XRD" % XRD_NS, nsmap={None: XRD_NS})
    for link in items:
        etree.SubElement(root, "{%s}Link" % XRD_NS, rel=link.rel, href=link.href)
    body: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return body + b"\n"


def jrd(items: list[Link]) -> bytes:
    """The JRD document (RFC 6415 Appendix A, XEP-0156 §3)."""
    doc = {"links": [{"rel": link.rel, "href": link.href} for link in items]}
    return (json.dumps(doc, indent=2) + "\n").encode()


def answer(
    path: str,
    method: str,
    base: str | None,
    *,
    websocket: bool,
    bosh: bool,
) -> HttpResponse:
    """The response to ``method`` on one of :data:`PATHS`; ``base`` as for :func:`links`
    (None: the request's ``Host`` was unusable)."""
    if method == "OPTIONS":
        return HttpResponse(204, headers=list(PREFLIGHT_HEADERS))
    if method not in ("GET", "HEAD"):
        return HttpResponse(405, b"method not allowed\n", headers=[("allow", "GET, HEAD")])
    if base is None:
        return HttpResponse(400, b"bad Host header\n", headers=list(CORS_HEADERS))
    items = links(base, websocket=websocket, bosh=bosh)
    if not items:
        return HttpResponse(404, b"not found\n", headers=list(CORS_HEADERS))
    extra = [*CORS_HEADERS, ("cache-control", CACHE_CONTROL)]
    if path == HOST_META_JSON_PATH:
        return HttpResponse(200, jrd(items), JRD_TYPE, extra)
    return HttpResponse(200, xrd(items), XRD_TYPE, extra)
