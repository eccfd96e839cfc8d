"""The ASGI app of ``xmppd serve``'s HTTP port, run by hypercorn's trio worker in our trio run.

Routes (below ``[http] path_prefix``):

- ``/healthz``: 200 JSON while serving;
- ``/xmpp-websocket``: RFC 7395 (``xmpp`` subprotocol required, ``Origin`` checked);
- ``/http-bind``: BOSH, handed to :meth:`HttpApp.http_bind` (the one dispatch point;
  a new BOSH session gets its stream's settings from :meth:`HttpApp.stream_settings`);
- ``/chat/``: the widget's static files; ``/chat/history``: public rooms' recent messages;
- ``/metrics``: Prometheus metrics (xmppd.metrics), only to ``http.metrics_allow``;
- ``/upload/``: XEP-0363 PUT and GET of uploaded files (:mod:`.upload`) when ``[upload]`` is on;
- ``/.well-known/host-meta`` and ``host-meta.json`` (XEP-0156, :mod:`.hostmeta`): always at
  the root of the host, whatever the prefix (RFC 8615), readable from any origin.

Every request first gets its real client (``proxy.ProxyPolicy``: the configured
forwarding header, only from ``trusted_proxies``) and its CORS verdict
(``cors.OriginPolicy``). Plaintext SASL over plain HTTP follows the c2s rule: only when the
client is on loopback and did not come through any proxy, or a trusted proxy says the
request came over HTTPS. ``Upgrade: h2c`` is honoured only with ``http.h2c`` and never
through a proxy (``h2c.install``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from xmppd import metrics, web
from xmppd.auth.base import AuthContext, AuthError, Identity
from xmppd.http import h2c, hostmeta, static
from xmppd.http.cors import PREFLIGHT_HEADERS, OriginPolicy
from xmppd.http.history import HistoryFeed
from xmppd.http.proxy import FORWARDING_HEADERS, ClientInfo, ProxyPolicy
from xmppd.http.request import HttpRequest, HttpResponse, header_map
from xmppd.http.serving import connection_counts_client
from xmppd.http.upload import UploadRoutes
from xmppd.http.websocket import websocket_connection
from xmppd.services.upload import UploadService
from xmppd.stream.c2s import C2SSettings
from xmppd.stream.sasl import ExternalMechanism
from xmppd.transport.admission import is_loopback
from xmppd.transport.driver import TransportName

if TYPE_CHECKING:
    from xmppd.config import HttpConfig
    from xmppd.server import Server

log = logging.getLogger("xmppd.http")

Scope = dict[str, Any]
Receive = Any
Send = Any

WS_PATH = "/xmpp-websocket"
BOSH_PATH = "/http-bind"
CHAT_PATH = "/chat/"
HISTORY_PATH = "/chat/history"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
UPLOAD_PATH = "/upload/"


class BoshHandler(Protocol):
    """What ``/http-bind`` needs from the BOSH layer (xmppd.bosh, helper "bosh")."""

    async def handle(self, request: HttpRequest) -> HttpResponse: ...


def make_bosh_handler(app: HttpApp) -> BoshHandler | None:
    """The BOSH connection manager for ``/http-bind``, or ``None`` (then 404).

    The single place where BOSH is wired in: return an object with
    ``async handle(HttpRequest) -> HttpResponse``; if it also has
    ``async run(*, task_status)``, :func:`xmppd.http.listen.serve_http` starts it in the
    server's nursery.
    ``app.server`` is the server; ``await app.stream_settings(request)`` gives a new
    session's C2SSettings (plaintext rule, SASL EXTERNAL from forum cookies), and
    ``C2SStream(settings, framing=BOSH)`` + ``C2SDriver(app.server, stream, outbox,
    request.client_ip, "bosh")`` do the rest (see xmppd/stream/framing.py).
    """
    from xmppd.bosh.manager import BoshManager

    return BoshManager(app)


class HttpApp:
    """One instance per server; hypercorn calls it per request / WebSocket."""

    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config.http
        self.cfg = cfg
        self.prefix = cfg.path_prefix
        self.proxies = ProxyPolicy()
        self.origins = OriginPolicy(())
        self.metrics_allow = metrics.parse_allow(())
        self.set_policies(cfg)
        self.static_root = Path(cfg.static_dir) if cfg.static_dir else static.default_root()
        muc_cfg = server.config.muc
        self.history = HistoryFeed(
            getattr(server, "muc", None), muc_cfg.public_history_rooms, muc_cfg.history_max
        )
        self.bosh: BoshHandler | None = make_bosh_handler(self) if cfg.bosh else None
        services = getattr(server, "services", None)
        uploads = services.get(UploadService) if services is not None else None
        self.upload = UploadRoutes(uploads, cfg.read_timeout) if uploads is not None else None
        self.serving = False

    # ---------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.serving = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.serving = False
                await send({"type": "lifespan.shutdown.complete"})
                return

    def trusts_proxy(self, ip: str) -> bool:
        """Whether ``ip`` is a trusted reverse proxy now (read per connection: a config
        reload may replace ``proxies``)."""
        return self.proxies.trusts(ip)

    def _route(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                return None
            path = path[len(self.prefix) :] or "/"
        return path

    def _client(self, scope: Scope, headers: dict[str, str]) -> ClientInfo:
        client = scope.get("client")
        peer = client[0] if client else ""
        secure = scope.get("scheme") in ("https", "wss")
        info = self.proxies.resolve(peer, secure, headers)
        if info.problem is not None and not self._proxy_problem_logged:
            self._proxy_problem_logged = True
            log.warning(
                "event=forwarded_header_malformed peer=%s problem=%s note=%s",
                peer,
                info.problem,
                "such requests count as the proxy's own; logged once",
            )
        return info

    def set_policies(self, cfg: HttpConfig) -> None:
        """Trusted proxies, their header family, CORS origins and who may scrape /metrics
        from ``cfg`` (start-up and reload): the next request and connection use them."""
        self.proxies = ProxyPolicy.of(cfg.trusted_proxies, cfg.forwarded_header)
        self.origins = OriginPolicy(cfg.cors_origins)
        self.metrics_allow = metrics.parse_allow(cfg.metrics_allow)
        self._proxy_problem_logged = False

    def h2c_upgrade_allowed(self, client: tuple[str, int] | None, raw: h2c.Headers) -> bool:
        """``Upgrade: h2c`` only with ``http.h2c``, and only straight from the client:
        never from a trusted proxy or with forwarding headers (h2c smuggling)."""
        if not self.cfg.h2c or client is None or self.proxies.trusts(client[0]):
            return False
        names = {name.decode("latin-1").strip().lower() for name, _ in raw}
        return not names.intersection(FORWARDING_HEADERS)

    def _origin_ok(self, headers: dict[str, str], client: ClientInfo) -> bool:
        return self.origins.allowed(
            headers.get("origin"), "https" if client.secure else "http", headers.get("host")
        )

    def c2s_settings(self, client: ClientInfo, external: Identity | None = None) -> C2SSettings:
        """The c2s rule for HTTP: TLS is the HTTP layer's; plaintext only when exempt.

        ``external``: an identity proven by the forum's cookies (:meth:`cookie_identity`):
        SASL EXTERNAL is offered for it, on this stream only.
        """
        server = self.server
        base = server.c2s_settings(client.ip, direct_tls=client.secure)
        exempt = (
            server.config.c2s.allow_plain_on_loopback
            and not client.proxied
            and is_loopback(client.ip)
        )
        mechanisms = base.mechanisms
        if external is not None:
            domain = server.config.server.domain
            mechanisms = {
                "EXTERNAL": lambda: ExternalMechanism(external, domain),
                **mechanisms,
            }
        return dataclasses.replace(
            base,
            mechanisms=mechanisms,
            tls_available=False,
            tls_active=client.secure,
            tls_required=server.config.c2s.require_encryption and not exempt,
        )

    async def stream_settings(self, request: HttpRequest) -> C2SSettings:
        """Settings for a new c2s stream carried by ``request`` (a BOSH session creation):
        the plaintext rule for its real client, plus SASL EXTERNAL when its forum cookies
        prove a member (``http.phpbb_cookie_auth``)."""
        client = ClientInfo(request.client_ip, request.secure, request.proxied)
        external = await self.cookie_identity(request.headers, client, "bosh")
        return self.c2s_settings(client, external)

    async def cookie_identity(
        self, headers: dict[str, str], client: ClientInfo, transport: TransportName
    ) -> Identity | None:
        """The forum member whose phpBB session cookies came with this request, if any.

        Only with ``http.phpbb_cookie_auth`` and the phpbb backend, and only when the
        request's ``Origin`` is this server or an explicitly listed one (so no other
        site's page can ride on the member's cookies). Invalid cookies count as a failed
        login for the client's address; nothing is offered then.
        """
        if not self.cfg.phpbb_cookie_auth:
            return None
        check = getattr(self.server.authenticator, "check_session_cookie", None)
        cookie_name = getattr(self.server.authenticator, "cookie_name", None)
        if check is None or cookie_name is None:
            return None
        scheme = "https" if client.secure else "http"
        if not self.origins.trusted_for_cookies(headers.get("origin"), scheme, headers.get("host")):
            return None
        cookies = parse_cookies(headers.get("cookie", ""))
        if not cookies:
            return None
        server = self.server
        if not server.login_allowed(client.ip, None):
            return None
        try:
            name = await cookie_name()
        except AuthError:
            return None
        user_id, sid = cookies.get(f"{name}_u"), cookies.get(f"{name}_sid")
        if not user_id or not sid or user_id == "1":  # 1 is phpBB's guest
            return None
        attempt = server.begin_login(client.ip)  # counted while in flight, like SASL
        if attempt is None:
            return None
        ctx = AuthContext(
            peer_ip=client.ip,
            transport=transport,
            secure=client.secure,
            user_agent=headers.get("user-agent"),
            gate=attempt,
        )
        try:
            identity: Identity = await check(user_id, sid, ctx)
        except AuthError:
            attempt.failed()
            return None
        except BaseException:  # cancelled: give the place back
            attempt.release()
            raise
        attempt.succeeded()
        log.info(
            "event=cookie_session user=%s ip=%s transport=%s",
            identity.localpart,
            client.ip,
            transport,
        )
        return identity

    # ---------------------------------------------------------------- HTTP
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope.get("headers", []))
        client = self._client(scope, headers)
        path = self._route(scope)
        method = scope["method"]
        if not self.cfg.h2c and scope.get("scheme") == "http" and scope.get("http_version") == "2":
            await _respond(send, HttpResponse(505, b"HTTP/2 needs TLS here\n"))
            return
        if scope["path"] in hostmeta.PATHS:
            await _respond(send, self._host_meta(scope["path"], method, headers, client),
                           head=method == "HEAD")  # fmt: skip
            return
        origin = headers.get("origin")
        origin_ok = self._origin_ok(headers, client)
        cors = OriginPolicy.response_headers(origin) if origin_ok else []
        if path is None:
            await _respond(send, _not_found())
            return
        if path.startswith(UPLOAD_PATH) and self.upload is not None:
            rel, allowed = path[len(UPLOAD_PATH) :], cors if origin_ok else None
            await self.upload.handle(scope, receive, send, rel, headers, allowed)
            return
        if method == "OPTIONS" and path in (BOSH_PATH, HISTORY_PATH):
            if not origin_ok:
                await _respond(send, HttpResponse(403, b"origin not allowed\n"))
                return
            await _respond(send, HttpResponse(204, headers=cors + PREFLIGHT_HEADERS))
            return
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            response = self._health()
        elif path == METRICS_PATH and method in ("GET", "HEAD"):
            response = self._metrics(scope, client, headers)
        elif path == BOSH_PATH:
            if not origin_ok:
                response = HttpResponse(403, b"origin not allowed\n")
            else:
                body = await _read_body(scope, receive, self.cfg)
                if isinstance(body, HttpResponse):
                    if body.status == 408:
                        self.server.refusals.refused("http", "body_timeout", client.ip)
                    response = body
                else:
                    request = HttpRequest(
                        method=method,
                        path=path,
                        query=scope.get("query_string", b"").decode("latin-1"),
                        headers=headers,
                        body=body,
                        client_ip=client.ip,
                        secure=client.secure,
                        origin=origin,
                        http_version=scope.get("http_version", "1.1"),
                        proxied=client.proxied,
                    )
                    response = await self.http_bind(request)
                    response.headers = [*response.headers, *cors]
        elif path == HISTORY_PATH and method in ("GET", "HEAD"):
            response = self._history(scope, headers)
            response.headers += cors
        elif path == WS_PATH:
            response = HttpResponse(426, b"use a WebSocket (RFC 7395)\n")
            response.headers.append(("upgrade", "websocket"))
        elif path == CHAT_PATH.rstrip("/") and method in ("GET", "HEAD"):
            response = HttpResponse(301, headers=[("location", self.prefix + CHAT_PATH)])
        elif path.startswith(CHAT_PATH) and method in ("GET", "HEAD"):
            response = self._static(path[len(CHAT_PATH) :], headers)
        elif path in (HEALTH_PATH, HISTORY_PATH, METRICS_PATH) or path.startswith(CHAT_PATH):
            response = HttpResponse(405, b"method not allowed\n", headers=[("allow", "GET")])
        else:
            response = _not_found()
        await _respond(send, response, head=method == "HEAD")

    async def http_bind(self, request: HttpRequest) -> HttpResponse:
        """``/http-bind``: the one hand-off to BOSH (XEP-0124/0206); 404 when BOSH is off."""
        if self.bosh is None:
            return _not_found()
        return await self.bosh.handle(request)

    def _host_meta(
        self, path: str, method: str, headers: dict[str, str], client: ClientInfo
    ) -> HttpResponse:
        """XEP-0156 discovery: the enabled transports' URLs, at ``http.public_url`` or as
        this request reached us (scheme per the trusted-proxy policy, its ``Host``)."""
        cfg = self.cfg
        base = cfg.public_url or hostmeta.request_base(
            client.secure, headers.get("host"), self.prefix
        )
        return hostmeta.answer(
            path, method, base, websocket=cfg.websocket, bosh=self.bosh is not None
        )

    def _health(self) -> HttpResponse:
        server = self.server
        doc = {
            "status": "ok" if self.serving else "starting",
            "domain": server.config.server.domain,
            "sessions": sum(len(r) for r in server.router.sessions.values()),
        }
        status = 200 if self.serving else 503
        return HttpResponse(
            status,
            json.dumps(doc).encode(),
            "application/json",
            [("cache-control", "no-store")],
        )

    def _metrics(self, scope: Scope, client: ClientInfo, headers: dict[str, str]) -> HttpResponse:
        """Prometheus' scrape: 403 unless the client is in ``http.metrics_allow``
        (a refusal says so, to help whoever set up the scraper: the route is no secret)."""
        peer = scope.get("client")
        if not metrics.may_scrape(client, peer[0] if peer else "", self.metrics_allow):
            return HttpResponse(403, b"metrics are not served to your address\n")
        body, content_type = self.server.metrics.exposition(headers.get("accept"))
        return HttpResponse(200, body, content_type, [("cache-control", "no-store")])

    def _history(self, scope: Scope, headers: dict[str, str]) -> HttpResponse:
        answer = self.history.answer(scope.get("query_string", b"").decode("latin-1"))
        if answer.status != 200:
            return HttpResponse(answer.status, answer.body, "application/json")
        max_age = self.cfg.history_max_age
        extra = [("cache-control", f"public, max-age={max_age}"), ("etag", answer.etag or "")]
        if answer.etag and _etag_matches(headers.get("if-none-match"), answer.etag):
            return HttpResponse(304, headers=extra)
        return HttpResponse(200, answer.body, "application/json; charset=utf-8", extra)

    def _static(self, rel: str, headers: dict[str, str]) -> HttpResponse:
        path = static.resolve(self.static_root, rel)
        item = static.load(path) if path is not None else None
        if item is None:
            if not rel.strip("/") and not (self.static_root / "index.html").is_file():
                # /chat/ itself is missing: the widget was never built here.
                hint = f"{web.build_hint()}\n".encode()
                return HttpResponse(404, hint, "text/plain; charset=utf-8")
            return _not_found()
        extra = [("cache-control", item.cache_control), ("etag", item.etag)]
        if _etag_matches(headers.get("if-none-match"), item.etag):
            return HttpResponse(304, headers=extra)
        return HttpResponse(200, item.body, item.content_type, extra)

    # ----------------------------------------------------------- WebSocket
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope.get("headers", []))
        client = self._client(scope, headers)
        path = self._route(scope)
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if path != WS_PATH or not self.cfg.websocket:
            await _deny(send, 404, "not found")
            return
        if "xmpp" not in scope.get("subprotocols", []):
            # RFC 7395 §3.3.1: the handshake must negotiate the "xmpp" subprotocol.
            await _deny(send, 400, "the xmpp WebSocket subprotocol is required (RFC 7395)")
            return
        if not self._origin_ok(headers, client):
            log.info("event=websocket_refused reason=origin ip=%s", client.ip)
            await _deny(send, 403, "origin not allowed")
            return
        server = self.server
        ticket = None
        if not connection_counts_client(scope, self.proxies.trusts):
            # checked and counted in one step, before the awaits below (see serving.py)
            ticket = server.admission.try_admit(client.ip)
            if ticket is None:
                full = server.admission.full
                server.refusals.refused("websocket", "total" if full else "per_address", client.ip)
                await _deny(send, *_ADMISSION_DENIAL[full])
                return
        try:
            external = await self.cookie_identity(headers, client, "websocket")
            await send({"type": "websocket.accept", "subprotocol": "xmpp"})
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        conn = websocket_connection(
            server,
            self.c2s_settings(client, external),
            receive,
            send,
            client.ip,
            headers.get("user-agent"),
            ticket,  # held by the connection until it ends
        )
        await conn.run()


# --------------------------------------------------------------------- helpers
def parse_cookies(header: str) -> dict[str, str]:
    """``Cookie: a=1; b=2`` (RFC 6265 §5.4); the first of repeated names wins."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def _not_found() -> HttpResponse:
    return HttpResponse(404, b"not found\n")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


#: Refused WebSocket handshakes, per "the total cap is reached".
_ADMISSION_DENIAL = {
    False: (429, "too many connections from your address"),
    True: (503, "the server is at its connection limit"),
}


def _too_large() -> HttpResponse:
    return HttpResponse(413, b"request body too large\n")


async def _read_body(scope: Scope, receive: Receive, cfg: HttpConfig) -> bytes | HttpResponse:
    """The request body, or the answer instead: 413 past ``max_body_size`` bytes, 408
    when it is not complete ``read_timeout`` seconds after the headers (a body dripped
    in a byte at a time holds its connection no longer than that)."""
    limit = cfg.max_body_size
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                if int(value) > limit:
                    return _too_large()
            except ValueError:
                return _too_large()
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(cfg.read_timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    return HttpResponse(408, b"request body not received in time\n")


async def _respond(send: Send, response: HttpResponse, head: bool = False) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if response.status in (204, 304):
        headers = headers[2:]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body = b"" if head or response.status in (204, 304) else response.body
    await send({"type": "http.response.body", "body": body})


async def _deny(send: Send, status: int, text: str) -> None:
    """Refuse a WebSocket handshake with an HTTP answer (ASGI denial response extension)."""
    body = (text + "\n").encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})
