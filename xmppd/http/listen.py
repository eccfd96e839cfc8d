"""The HTTP port: hypercorn (trio worker) set up for :class:`~xmppd.http.app.HttpApp`.

Kept apart from the app so the routes stay free of listener settings: this module turns
``[http]``, ``[c2s]`` and ``[bosh]`` into hypercorn's timeouts and binds, and runs it behind
our own accept loop (:mod:`xmppd.http.serving`, which admits a connection before hypercorn
reads a byte of it).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HyperConfig

from xmppd.http import h2c
from xmppd.http.app import HttpApp
from xmppd.http.serving import serve

if TYPE_CHECKING:
    from xmppd.config import Config
    from xmppd.server import Server

log = logging.getLogger("xmppd.http")


def hypercorn_config(server: Server, app: HttpApp | None = None) -> Any:
    """hypercorn's settings; with ``app``, its ``h2c_upgrade_allowed`` gates h2c."""

    cfg = server.config.http
    hc = HyperConfig()

    def addr(port: int) -> str:
        host = cfg.host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    tls_files = getattr(server, "tls_files", None)
    if cfg.tls_port and tls_files is not None:
        hc.certfile, hc.keyfile = (str(p) for p in tls_files)
        hc.bind = [addr(cfg.tls_port)]
        hc.insecure_bind = [addr(cfg.port)] if cfg.port or cfg.port == 0 else []
    else:
        hc.bind = [addr(cfg.port)]
    hc.alpn_protocols = ["h2", "http/1.1"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("xmppd.http.server")
    hc.errorlog.setLevel(logging.WARNING)  # our own event=listening lines say it
    # an idle connection, and one still sending its request headers, closes after this
    hc.keep_alive_timeout = cfg.keep_alive_timeout
    hc.ssl_handshake_timeout = cfg.read_timeout
    hc.read_timeout = silence_limit(server.config)
    hc.graceful_timeout = 2
    hc.backlog = 1024
    hc.include_server_header = False
    hc.websocket_max_message_size = server.config.limits.max_stanza_size + 65536
    hc.h11_max_incomplete_size = 64 * 1024
    if app is not None:
        h2c.install()
        setattr(hc, h2c.ATTRIBUTE, app.h2c_upgrade_allowed)
    return hc


def silence_limit(config: Config) -> int | None:
    """hypercorn's ``read_timeout``: a backstop for a connection from which no byte at all
    arrives for longer than any legitimate client stays silent — a held BOSH request
    (``max_wait``), a WebSocket between our pings (``ping_interval`` + ``ping_timeout``),
    an idle keep-alive. ``None`` when pings are off (a WebSocket may then be silent forever).
    Bodies and headers have their own, shorter deadlines (``read_timeout``,
    ``keep_alive_timeout``)."""
    c2s, http = config.c2s, config.http
    if c2s.ping_interval <= 0:
        return None
    longest = max(
        config.bosh.max_wait,
        c2s.handshake_timeout,
        c2s.ping_interval + c2s.ping_timeout,
        http.keep_alive_timeout,
    )
    return math.ceil(longest + http.read_timeout)


async def serve_http(server: Server, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run hypercorn for :class:`HttpApp` in this trio run; reports the bound ports.

    Connections are admitted by :func:`xmppd.http.serving.serve` before hypercorn reads.
    """
    app = HttpApp(server)
    server.http_app = app
    config = hypercorn_config(server, app)
    async with trio.open_nursery() as nursery:
        run = getattr(app.bosh, "run", None)
        if run is not None:
            await nursery.start(run)
        binds: list[str] = await nursery.start(serve, server, app, config, app.trusts_proxy)
        ports: dict[str, int] = {}
        for bind in binds:
            scheme, _, rest = bind.partition("://")
            ports["https" if scheme == "https" else "http"] = int(rest.rsplit(":", 1)[1])
            log.info("event=listening service=%s address=%s", scheme, rest)
        server.listening.update(ports)
        app.serving = True
        task_status.started(ports)
