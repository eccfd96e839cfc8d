"""Assembles one xmppd process: storage, auth, router, services and listeners in one trio run."""

from __future__ import annotations

import logging
import os
import platform
import signal
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

import xmppd
from xmppd import metrics
from xmppd.admin import start_admin
from xmppd.auth.base import Authenticator
from xmppd.auth.internal import InternalAuthenticator
from xmppd.auth.phpbb import PhpbbAuthenticator
from xmppd.auth.phpbb_recheck import PhpbbRecheck
from xmppd.auth.ratelimit import LoginAttempt, LoginLimits
from xmppd.config import Config, ConfigError
from xmppd.http.listen import serve_http
from xmppd.memory import trim_periodically
from xmppd.private_files import private_dir
from xmppd.reload import ReloadReport, reload_server
from xmppd.router import Router
from xmppd.services.account_mam import AccountMamService
from xmppd.services.avatar_sync import AvatarSync
from xmppd.services.basic import BasicServices
from xmppd.services.blocking import BlockingService
from xmppd.services.bookmark_sync import BookmarkSync
from xmppd.services.carbons import CarbonsService
from xmppd.services.groupchat import GroupchatService
from xmppd.services.lifecycle import Service, ServiceContext, build_services
from xmppd.services.offline import OfflineService
from xmppd.services.password import PasswordService
from xmppd.services.pep import PepService
from xmppd.services.presence import PresenceManager
from xmppd.services.private_storage import PrivateStorageService
from xmppd.services.push import PushService
from xmppd.services.roster import RosterService
from xmppd.services.upload import UploadService
from xmppd.services.vcard import VcardService
from xmppd.storage import AsyncDatabase, Database
from xmppd.stream.c2s import C2SSettings, C2SStream
from xmppd.stream.mechanisms import offered_mechanisms
from xmppd.transport import fdlimit, tls
from xmppd.transport.admission import is_loopback
from xmppd.transport.c2s import c2s_connection
from xmppd.transport.component import ComponentHub
from xmppd.transport.limits import make_admission
from xmppd.transport.refusals import RefusalLog
from xmppd.transport.shell import ClientConnection
from xmppd.transport.sm import ResumptionManager

log = logging.getLogger("xmppd.server")

#: What the server serves besides its listeners, built in dependency order (see
#: xmppd.services.lifecycle); their runs start in the server's nursery.
SERVICES: tuple[type[Service], ...] = (
    BasicServices,
    OfflineService,
    RosterService,
    PresenceManager,
    BlockingService,
    PepService,
    VcardService,
    PrivateStorageService,
    AvatarSync,
    BookmarkSync,
    PasswordService,
    CarbonsService,
    AccountMamService,
    PushService,
    GroupchatService,
    UploadService,
    PhpbbRecheck,
)


class Server:
    """Everything one process serves; listeners call back into it."""

    def __init__(
        self,
        config: Config,
        database: Database,
        authenticator: Authenticator,
        adb: AsyncDatabase | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.adb = adb or AsyncDatabase(database)
        self.authenticator = authenticator
        self.router = Router(config.server.domain, authenticator)
        #: Failed-login limits per client address (IPv6 per network) and per account.
        self.logins = LoginLimits(config.limits.auth_failures_per_minute, config.limits.ipv6_prefix)
        self.connections: set[ClientConnection] = set()
        #: Client connections per address and in total, shared by every client listener
        #: (what counts: xmppd.http.serving's docstring).
        self.admission = make_admission(config)
        #: Refused connections and handshakes, logged without a flood.
        self.refusals = RefusalLog(ipv6_prefix=config.limits.ipv6_prefix)
        #: The c2s context (STARTTLS, direct TLS), read per handshake; see use_tls.
        self.ssl_context: ssl.SSLContext | None = None
        #: The HTTPS port's context, read per accepted connection (xmppd.http.serving).
        self.https_ssl_context: ssl.SSLContext | None = None
        #: The certificate and key in use (xmppd.transport.tls.TlsPair).
        self.tls: tls.TlsPair | None = None
        #: XEP-0198 resumable sessions (one expiry task for all of them).
        self.sm = ResumptionManager(self.router, config.sm, config.limits)
        #: (certificate, key) files of ssl_context (hypercorn's sockets are TLS when set).
        self.tls_files: tuple[Path, Path] | None = None
        #: The configuration file ``reload`` reads again (None: defaults + environment).
        self.config_path: str | None = None
        #: One reload at a time (SIGHUP and ``xmppd reload`` may meet).
        self.reload_lock = trio.Lock()
        #: The ASGI app once ``serve_http`` runs (xmppd.http.app.HttpApp).
        self.http_app: Any = None
        self.listening: dict[str, int] = {}
        #: The admin socket (xmppd.admin); ``xmppd serve`` binds it before anything else.
        self.admin: Any = None
        #: When this server started serving (UNIX time), for ``stats``.
        self.started_at = time.time()
        self._mechanisms = offered_mechanisms(
            config.server.domain,
            scram=authenticator.supports_scram(),
            hashes=getattr(authenticator, "scram_hashes", ("sha256", "sha1")),
        )
        #: Built from the configuration in dependency order (xmppd.services.lifecycle).
        self.services = build_services(
            SERVICES, ServiceContext(config, self.router, self.adb, authenticator)
        )
        basic = self.services.get(BasicServices)
        #: XEP-0115 §6.3: the server's caps in the stream features (its disco#info is
        #: fixed once the services are built).
        self._caps = basic.disco.caps_element(self.router) if basic is not None else b""
        groupchat = self.services.get(GroupchatService)
        #: The MUC service (None: ``muc.enabled`` is false), for admin, reload and stats.
        self.muc = groupchat.muc if groupchat is not None else None
        self.components = ComponentHub(self)
        #: Prometheus metrics (``/metrics`` on the HTTP port, see xmppd.metrics).
        self.metrics = metrics.install(self)

    # -------------------------------------------------------------- set-up
    def load_tls(self) -> None:
        """Load the configured pair (or the self-signed one); ConfigError names the key."""
        self.use_tls(tls.read_tls(self.config))

    def use_tls(self, pair: tls.TlsPair) -> None:
        """Every TLS handshake from now on, on every listener, uses ``pair``; connections
        already made keep theirs. Plain assignments, no await: no handshake sees half."""
        self.tls = pair
        self.ssl_context = pair.c2s
        self.https_ssl_context = pair.https
        self.tls_files = (pair.cert_path, pair.key_path)

    def c2s_settings(self, peer_ip: str, direct_tls: bool) -> C2SSettings:
        cfg = self.config
        exempt = cfg.c2s.allow_plain_on_loopback and is_loopback(peer_ip)
        return C2SSettings(
            domain=cfg.server.domain,
            mechanisms=self._mechanisms,
            tls_available=self.ssl_context is not None,
            tls_active=direct_tls,
            tls_required=cfg.c2s.require_encryption and not exempt,
            max_stanza_size=cfg.limits.max_stanza_size,
            max_depth=cfg.limits.max_depth,
            sm_enabled=cfg.sm.enabled,
            sm_resume_timeout=cfg.sm.resume_timeout,
            sm_request_every=cfg.sm.request_every,
            sm_max_unacked=cfg.sm.max_unacked,
            csi_enabled=cfg.csi.enabled,
            caps=self._caps,
        )

    # -------------------------------------------------------------- logins
    def begin_login(self, ip: str) -> LoginAttempt | None:
        """Start a login from ``ip`` (pass it to the backend as ``AuthContext.gate``, then
        settle it); ``None`` when the address has no attempts left."""
        return self.logins.begin(ip)

    def login_allowed(self, ip: str, account: str | None = None) -> bool:
        """For checks that run without a :class:`LoginAttempt`: address (and account) only.

        ``account`` must be a key a backend claims (see ``xmppd.auth.base.claim_account``),
        never a name as the client spelled it.
        """
        return self.logins.allowed(ip, account)

    def record_login_failure(self, ip: str, account: str | None = None) -> None:
        self.logins.record_failure(ip, account)

    # ----------------------------------------------------------- listeners
    async def _handle(self, stream: trio.SocketStream, direct_tls: bool) -> None:
        try:
            peer = stream.socket.getpeername()
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
        except OSError:
            await stream.aclose()
            return
        ticket = self.admission.try_admit(ip)  # before reading a byte
        if ticket is None:
            full = self.admission.full
            listener = "c2s_tls" if direct_tls else "c2s"
            self.refusals.refused(listener, "total" if full else "per_address", ip)
            if direct_tls:  # nothing to say before a TLS handshake we will not do
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            else:
                await _refuse(stream, self.config.server.domain, full)
            return
        await c2s_connection(self, stream, ip, direct_tls=direct_tls, ticket=ticket).run()

    async def serve_c2s(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config.c2s
        async with trio.open_nursery() as nursery:
            specs: list[tuple[str, int, bool]] = [("c2s", cfg.port, False)]
            if cfg.direct_tls_port and self.ssl_context is not None:
                specs.append(("c2s_tls", cfg.direct_tls_port, True))
            for name, port, direct in specs:
                listeners = await trio.open_tcp_listeners(port, host=cfg.bind, backlog=1024)
                self.listening[name] = listeners[0].socket.getsockname()[1]

                async def handler(stream: trio.SocketStream, _direct: bool = direct) -> None:
                    await self._handle(stream, _direct)

                nursery.start_soon(trio.serve_listeners, handler, listeners)
                log.info(
                    "event=listening service=%s address=%s port=%d",
                    name,
                    cfg.bind,
                    self.listening[name],
                )
            task_status.started(self.listening)

    # ------------------------------------------------------------ operation
    def stats(self) -> dict[str, Any]:
        """What ``xmppd stats`` shows: counters of this process (a later /metrics too)."""
        sessions = [s for r in self.router.sessions.values() for s in r.values()]
        muc = self.muc
        bosh = getattr(getattr(self.http_app, "bosh", None), "sessions", {})
        return {
            "version": xmppd.__version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "sessions": len(sessions),
            "sessions_by_transport": dict(sorted(Counter(s.transport for s in sessions).items())),
            "detached_sessions": len(self.sm.registry.detached()),
            "users_online": len(self.router.sessions),
            "client_connections": len(self.connections),  # TCP, WebSocket and BOSH
            "bosh_sessions": len(bosh),
            "rooms": len(muc.rooms) if muc is not None else 0,
            "occupants": sum(len(r.occupants) for r in muc.rooms.values()) if muc else 0,
            "muc_messages_written": muc.written if muc is not None else 0,
            "components_connected": sorted(
                d for d, svc in self.components.services.items() if svc.connection is not None
            ),
            "memory_rss_bytes": _rss_bytes(),
        }

    async def reload(self) -> ReloadReport:
        """Re-read the configuration file and apply what can change while serving.

        See :mod:`xmppd.reload`: TLS pair, log level, limits, ``[[muc.rooms]]``,
        ``[[components]]``, CORS origins and trusted proxies apply at once; other changed
        keys are reported as needing a restart and not applied. An invalid configuration
        (or a TLS pair that does not load) raises :class:`~xmppd.config.ConfigError`
        naming the key, after logging it; then nothing has changed.
        """
        return await reload_server(self)

    async def shutdown(self, grace: float = 3.0) -> None:
        """Tell every client ``system-shutdown`` and give writers a moment to flush."""
        await self.sm.shutdown()
        for conn in list(self.connections):
            conn.close("system-shutdown", "the server is shutting down")
        with trio.move_on_after(grace):
            while self.connections:  # noqa: ASYNC110 - connections end on their own tasks
                await trio.sleep(0.05)


def _rss_bytes() -> int:
    """Resident memory of this process (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


async def _refuse(stream: trio.SocketStream, domain: str, full: bool = False) -> None:
    """A stream error for a refused plain connection: nothing of the peer's is read."""
    s = C2SStream(C2SSettings(domain=domain, mechanisms={}))
    if full:
        s.close("resource-constraint", "the server is at its connection limit")
    else:
        s.close("policy-violation", "too many connections from your address")
    with trio.move_on_after(1):
        try:
            await stream.send_all(s.data_to_send())
        except (trio.BrokenResourceError, OSError):
            pass
    await stream.aclose()


def make_authenticator(config: Config, adb: AsyncDatabase) -> Authenticator:
    if config.auth.backend == "phpbb":
        return PhpbbAuthenticator(config.auth.phpbb, config.server.domain)
    return InternalAuthenticator(adb)


def open_database(config: Config) -> Database:
    private_dir(config.data_path)
    db = Database(config.database_url)
    if config.database.auto_upgrade:
        db.upgrade()
    return db


def build_server(config: Config) -> Server:
    nofile = fdlimit.raise_soft_limit()  # before the admission derives its total from it
    db = open_database(config)
    adb = AsyncDatabase(db)
    server = Server(config, db, make_authenticator(config, adb), adb)
    server.load_tls()
    admission = server.admission
    log.info(
        "event=admission per_address=%d total=%d nofile=%d",
        admission.per_address,
        admission.total,
        nofile,
    )
    return server


async def _reload_on_signal(server: Server) -> None:
    """SIGHUP: reload; the outcome is logged (a refused configuration too), never raised."""
    try:
        await server.reload()
    except ConfigError:
        pass  # logged by the reload, naming the key; the old configuration keeps running
    except Exception:  # a bug must not take the server down with it
        log.exception("event=reload_crashed")


async def run_server(
    server: Server,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    handle_signals: bool = True,
) -> None:
    """Serve until cancelled or SIGTERM/SIGINT; then shut down gracefully."""
    async with trio.open_nursery() as nursery:
        await start_admin(server, nursery)
        await server.services.start(nursery)
        component_port = await nursery.start(server.components.serve)
        if component_port is not None:
            server.listening["component"] = component_port
        if server.config.http.enabled:
            await nursery.start(serve_http, server)
        await nursery.start(server.sm.run)
        listening = await nursery.start(server.serve_c2s)
        nursery.start_soon(trim_periodically, server.config.server.memory_trim_interval)
        nursery.start_soon(server.refusals.run)
        server.started_at = time.time()
        nursery.start_soon(server.metrics.watch_loop)
        log.info(
            "event=started domain=%s version=%s python=%s",
            server.config.server.domain,
            xmppd.__version__,
            platform.python_version(),
        )
        task_status.started(listening)
        if handle_signals:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for signum in signals:
                    log.info("event=signal signal=%s", signal.Signals(signum).name)
                    if signum == signal.SIGHUP:  # re-read the configuration, keep serving
                        nursery.start_soon(_reload_on_signal, server)
                        continue
                    break
            await server.shutdown()
            await server.components.shutdown()
            await server.services.stop()
            nursery.cancel_scope.cancel()
    server.refusals.flush()  # the last window's summary, so nothing refused goes unsaid
    with trio.CancelScope(shield=True):
        await server.authenticator.aclose()
    server.database.dispose()
