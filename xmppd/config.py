"""One typed configuration: a TOML file plus ``XMPPD_<SECTION>_<KEY>`` environment overrides.

Validated once at start-up (``xmppd check-config``) so a typo is an error with the
offending key named, never a surprise at the first login. :mod:`xmppd.settings` reads
the file and the environment (the rules every program here shares); each section's
``validate()`` checks its own keys, :meth:`Config.validate` what spans sections. Sections
that belong to one feature live beside it (``[muc]`` in :mod:`xmppd.muc.config`,
``[bosh]`` in :mod:`xmppd.bosh.config`).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from xmppd import settings
from xmppd.bosh.config import BoshConfig
from xmppd.jid import JIDError, nameprep_domain
from xmppd.mam.config import MamConfig
from xmppd.muc.config import MucConfig
from xmppd.pubsub.config import PepConfig
from xmppd.services.account_config import PrivateStorageConfig, VcardConfig
from xmppd.services.push_config import PushConfig
from xmppd.settings import ConfigError
from xmppd.stream.csi_config import CsiConfig
from xmppd.upload.config import UploadConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _port(key: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError.at(key, f"{port} is not a TCP port")


@dataclass(slots=True)
class ServerConfig:
    domain: str = "localhost"
    data_dir: str = "var"
    admins: list[str] = field(default_factory=list)
    #: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    log_level: str = "INFO"
    #: Seconds between returning freed heap pages to the OS (0 disables).
    memory_trim_interval: float = 5.0

    def validate(self) -> None:
        try:
            self.domain = nameprep_domain(self.domain)
        except JIDError as exc:
            raise ConfigError.at("domain", str(exc)) from None
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError.at(
                "log_level", f"{self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )


@dataclass(slots=True)
class C2SConfig:
    #: Keys that did nothing and were removed; an old file setting one still loads.
    RETIRED: ClassVar[dict[str, str]] = {
        "idle_timeout": "never used: silent clients are pinged (ping_interval, ping_timeout)",
    }

    bind: str = "0.0.0.0"  # noqa: S104 - a server listens on all interfaces by default
    port: int = 5222
    direct_tls_port: int = 5223
    require_encryption: bool = True
    allow_plain_on_loopback: bool = True
    handshake_timeout: float = 30.0
    ping_interval: float = 120.0
    ping_timeout: float = 60.0
    #: Longest one write to a client may take (s): a peer that stops reading while the
    #: kernel's buffers are full is cut off instead of holding its connection forever.
    send_timeout: float = 60.0
    #: Idle seconds after which a stream drops its parser buffers and writer task.
    hibernate_after: float = 2.0
    #: Connections at once from one address over c2s, direct TLS and HTTP together (a
    #: BOSH session counts one more; see xmppd.http.serving for what counts).
    max_connections_per_ip: int = 64
    send_queue_bytes: int = 1_048_576

    def validate(self) -> None:
        _port("port", self.port)
        _port("direct_tls_port", self.direct_tls_port)
        if self.send_timeout <= 0:
            raise ConfigError.at("send_timeout", "must be positive")


@dataclass(slots=True)
class SMConfig:
    """XEP-0198 stream management (acks and resumption) on every c2s transport."""

    enabled: bool = True
    #: Longest a session whose connection dropped is kept for ``<resume/>``, seconds.
    resume_timeout: int = 300
    #: Ask the client for an ack after this many unacknowledged stanzas.
    request_every: int = 5
    #: Unacknowledged stanzas kept per session; past it the stream is closed.
    max_unacked: int = 500
    #: Sessions of one account waiting for ``<resume/>`` at once; one more detaching
    #: ends the one detached longest.
    max_detached: int = 4

    def validate(self) -> None:
        if self.resume_timeout < 1:
            raise ConfigError.at("resume_timeout", "must be at least 1 second")
        for key in ("request_every", "max_unacked"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        if self.max_detached < 0:
            raise ConfigError.at("max_detached", "must not be negative")


@dataclass(slots=True)
class TLSConfig:
    cert: str = ""
    key: str = ""

    def validate(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError.at(
                "", "give both cert and key, or neither (a self-signed pair is made)"
            )


@dataclass(slots=True)
class LimitsConfig:
    max_stanza_size: int = 262_144
    max_depth: int = 64
    auth_failures_per_minute: int = 10
    #: IPv6 addresses are counted per network of this prefix length (connection caps,
    #: failed-login limits): one subscriber usually holds a whole /64.
    ipv6_prefix: int = 64
    #: Client connections at once over every listener (c2s, direct TLS, HTTP; a BOSH
    #: session counts as one more). 0: derived from the file-descriptor limit (raised to
    #: its hard limit at start), leaving room for the database, logs and listeners.
    max_connections: int = 0
    #: Resources one account may have bound at once, detached XEP-0198 sessions included
    #: (the one detached longest makes room); past it binding gets resource-constraint.
    max_resources: int = 16

    def validate(self) -> None:
        if self.max_stanza_size < 10_000:
            raise ConfigError.at("max_stanza_size", "must be at least 10000 (RFC 6120 §13.12)")
        if self.max_connections < 0:
            raise ConfigError.at("max_connections", "must not be negative (0 = from the fd limit)")
        if not 16 <= self.ipv6_prefix <= 128:
            raise ConfigError.at("ipv6_prefix", "must be between 16 and 128")
        if self.max_resources < 1:
            raise ConfigError.at("max_resources", "must be at least 1")


@dataclass(slots=True)
class OfflineConfig:
    """Messages kept for accounts without an available resource (XEP-0160)."""

    #: Messages kept per account; more are bounced with service-unavailable.
    max_messages: int = 500

    def validate(self) -> None:
        if self.max_messages < 0:
            raise ConfigError.at("max_messages", "must not be negative")


@dataclass(slots=True)
class RosterConfig:
    """Roster limits (RFC 6121 §2.3.3); a full roster fetch must fit the send queues."""

    #: Contacts per roster; adding more is refused with not-allowed.
    max_items: int = 500
    #: Largest roster item as sent to clients, in bytes (not-acceptable beyond).
    max_item_bytes: int = 1024
    #: Longest item name, in characters (not-acceptable beyond).
    max_name_length: int = 256
    #: Longest group name, in characters (not-acceptable beyond).
    max_group_length: int = 64
    #: Groups per item (not-acceptable beyond).
    max_groups: int = 16

    def validate(self) -> None:
        for key in ("max_items", "max_name_length", "max_group_length", "max_groups"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        if self.max_item_bytes < 512:
            raise ConfigError.at("max_item_bytes", "must be at least 512")


@dataclass(slots=True)
class DatabaseConfig:
    url: str = ""
    auto_upgrade: bool = True


@dataclass(slots=True)
class PhpbbConfig:
    url: str = ""
    table_prefix: str = "phpbb_"
    accept_session_ids: bool = True
    accept_passwords: bool = True
    query_timeout: float = 5.0
    cache_seconds: float = 30.0
    ip_check: bool = False
    browser_check: bool = False
    #: Seconds between re-checks of connected members (ban, deactivation, deletion, and
    #: the forum session of session-id logins): one batched query per round; 0 = off.
    recheck_interval: float = 30.0
    #: A session-id login outlives its forum session while the member holds another
    #: valid forum session in the same browser (or that session's autologin key).
    recheck_follow_browser: bool = True

    def validate(self) -> None:
        interval = self.recheck_interval
        if interval != 0 and not 1 <= interval <= 86400:
            raise ConfigError.at("recheck_interval", "0 (off) or 1 to 86400 seconds")


@dataclass(slots=True)
class AuthConfig:
    backend: Literal["internal", "phpbb"] = "internal"
    phpbb: PhpbbConfig = field(default_factory=PhpbbConfig)

    def validate(self) -> None:
        if self.backend == "phpbb" and not self.phpbb.url:
            raise ConfigError.at("phpbb.url", "required when auth.backend = 'phpbb'")


@dataclass(slots=True)
class ComponentListenerConfig:
    """The XEP-0114 listener; it only listens when ``[[components]]`` are configured."""

    #: Loopback by default: components are trusted local programs (the bridges).
    host: str = "127.0.0.1"
    port: int = 5347
    handshake_timeout: float = 10.0
    #: Seconds of silence from a component before the server pings it.
    ping_interval: float = 60.0
    ping_timeout: float = 30.0
    #: Bytes queued for a component that does not read before it is disconnected.
    send_queue_bytes: int = 4_194_304
    #: Component connections at once (authenticated or not; each component needs one).
    max_connections: int = 32
    #: Component connections at once from one address.
    max_connections_per_ip: int = 8

    def validate(self) -> None:
        _port("port", self.port)
        for key in ("max_connections", "max_connections_per_ip"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")


@dataclass(slots=True)
class ComponentConfig:
    """One ``[[components]]`` entry: an external component (XEP-0114) and its secret."""

    domain: str = ""
    #: The shared secret, or ``secret_file`` naming a file holding it; the environment
    #: variable ``XMPPD_COMPONENT_<DOMAIN>_SECRET`` (domain upper-cased, every character
    #: other than A-Z and 0-9 replaced by ``_``) overrides both.
    secret: str = ""
    secret_file: str = ""
    #: Nicknames (glob patterns, matched case-insensitively) it may take in MUC rooms.
    muc_nicks: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Normalises the domain and reads ``secret_file`` into ``secret``."""
        try:
            self.domain = nameprep_domain(self.domain)
        except JIDError as exc:
            raise ConfigError.at("domain", str(exc)) from None
        if self.secret and self.secret_file:
            raise ConfigError.at("", "give secret or secret_file, not both")
        if self.secret_file:
            try:
                self.secret = Path(self.secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError.at("secret_file", f"cannot read it ({exc.strerror})") from None
            if not self.secret:
                raise ConfigError.at("secret_file", "the file is empty")
        if not self.secret:
            raise ConfigError.at(
                "secret",
                "required (or secret_file, or "
                f"XMPPD_COMPONENT_{component_env_key(self.domain)}_SECRET)",
            )
        if any(not pattern.strip() for pattern in self.muc_nicks):
            raise ConfigError.at("muc_nicks", "empty pattern")


@dataclass(slots=True)
class HttpConfig:
    """The HTTP listener: BOSH, WebSocket, the widget's files, history JSON, health."""

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on all interfaces by default
    port: int = 5280
    #: HTTPS with the server's certificate (ALPN h2 + http/1.1); 0 disables.
    tls_port: int = 5443
    #: Accept HTTP/2 without TLS (prior knowledge or Upgrade: h2c) on ``port``. Off by
    #: default: a proxy passing ``Upgrade: h2c`` on would become a tunnel (h2c smuggling);
    #: even when on, requests through a proxy are never upgraded.
    h2c: bool = False
    #: Serve every path under this prefix (e.g. "/xmpp" behind a shared web server).
    path_prefix: str = ""
    #: Reverse proxies (IP addresses or CIDR networks) whose forwarding headers are
    #: believed; requests from them never get the loopback exemption.
    trusted_proxies: list[str] = field(default_factory=list)
    #: The one header family those proxies set: "x-forwarded-for" (with
    #: X-Forwarded-Proto) or "forwarded" (RFC 7239 for=/proto=); the other is ignored.
    forwarded_header: str = "x-forwarded-for"
    #: Origins (scheme://host[:port]) other sites' pages may call BOSH / history from;
    #: "*" allows any. Same-origin requests are always allowed.
    cors_origins: list[str] = field(default_factory=list)
    websocket: bool = True
    bosh: bool = True
    #: Directory served at /chat/; empty: the widget shipped in the package (xmppd/web/dist).
    static_dir: str = ""
    #: Largest request body accepted (BOSH POST), bytes.
    max_body_size: int = 1_048_576
    #: Seconds a client may take to send a request body (then 408) or to finish the TLS
    #: handshake; a body dripped in byte by byte holds nothing for longer.
    read_timeout: float = 30.0
    #: Seconds an idle connection stays open between requests, and the longest a client
    #: may take to send a request's headers. Keep it above a reverse proxy's own.
    keep_alive_timeout: float = 75.0
    #: Seconds /chat/history responses may be cached by browsers and proxies.
    history_max_age: int = 5
    #: With auth.backend = "phpbb": read the forum's session cookies (``<cookie_name>_u``
    #: and ``_sid``) on WebSocket/BOSH requests from the same origin or a listed
    #: ``cors_origins`` entry, and offer SASL EXTERNAL for a valid forum session.
    phpbb_cookie_auth: bool = False
    #: Client addresses (IP addresses or CIDR networks) that may read ``/metrics``
    #: (Prometheus); others get 403. Through a proxy: only the address a trusted proxy
    #: names, never loopback. Empty: nobody.
    metrics_allow: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    #: The address browsers reach this port at ("https://forum.example.org/xmpp": scheme,
    #: host, the public path prefix), for the URLs ``/.well-known/host-meta`` announces
    #: (XEP-0156). Empty: taken from each request (its Host, https when over TLS or a
    #: trusted proxy says so, ``path_prefix``).
    public_url: str = ""

    def validate(self) -> None:
        _port("port", self.port)
        if self.public_url:
            _public_url(self.public_url)
        _port("tls_port", self.tls_port)
        prefix = self.path_prefix
        if prefix and (not prefix.startswith("/") or prefix.endswith("/") or "?" in prefix):
            raise ConfigError.at("path_prefix", "must start with '/' and not end with '/'")
        for proxy in self.trusted_proxies:
            if not _is_network(proxy):
                raise ConfigError.at("trusted_proxies", f"{proxy!r} is not an address")
        for allowed in self.metrics_allow:
            if not _is_network(allowed):
                raise ConfigError.at("metrics_allow", f"{allowed!r} is not an address or network")
        if self.forwarded_header not in ("x-forwarded-for", "forwarded"):
            raise ConfigError.at("forwarded_header", 'must be "x-forwarded-for" or "forwarded"')
        for origin in self.cors_origins:
            if origin != "*" and ("://" not in origin or origin.endswith("/")):
                raise ConfigError.at("cors_origins", f"{origin!r} is not scheme://host[:port]")
        for key in ("read_timeout", "keep_alive_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError.at(key, "must be positive")


def _public_url(url: str) -> None:
    """``http.public_url``: ``http[s]://host[:port][/path]``, nothing after the path."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError.at("public_url", f"{url!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError.at("public_url", f"{url!r} must be http(s)://host[:port][/path]")
    if parts.query or parts.fragment or "@" in parts.netloc or url.endswith("/"):
        raise ConfigError.at("public_url", "no user, query, fragment or trailing '/'")
    if any(c.isspace() for c in url) or not url.isprintable():
        raise ConfigError.at("public_url", "no spaces or control characters")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class AdminConfig:
    """The admin socket ``xmppd serve`` listens on (UNIX stream socket, never TCP)."""

    #: Listen on the admin socket; without it the CLI changes only the database.
    enabled: bool = True
    #: Path of the socket; empty: ``<data_dir>/admin.sock`` (data_dir is private, 0700).
    socket: str = ""
    #: A group whose members may use the socket (mode 0660 with that group instead of
    #: 0600); root and the server's own user always may.
    group: str = ""
    #: Seconds a client has to send its request.
    timeout: float = 10.0

    def validate(self) -> None:
        if self.timeout <= 0:
            raise ConfigError.at("timeout", "must be positive")
        if not self.group:
            return
        try:
            if self.group.isdigit():
                grp.getgrgid(int(self.group))
            else:
                grp.getgrnam(self.group)
        except KeyError:
            raise ConfigError.at("group", f"no group named {self.group!r}") from None
        if not self.socket:
            raise ConfigError.at(
                "socket",
                "required with admin.group (data_dir is private, so the group could not "
                "reach a socket in it), e.g. /run/xmppd/admin.sock",
            )


@dataclass(slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    c2s: C2SConfig = field(default_factory=C2SConfig)
    sm: SMConfig = field(default_factory=SMConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    roster: RosterConfig = field(default_factory=RosterConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    muc: MucConfig = field(default_factory=MucConfig)
    pep: PepConfig = field(default_factory=PepConfig)
    mam: MamConfig = field(default_factory=MamConfig)
    component_listener: ComponentListenerConfig = field(default_factory=ComponentListenerConfig)
    components: list[ComponentConfig] = field(default_factory=list)
    http: HttpConfig = field(default_factory=HttpConfig)
    bosh: BoshConfig = field(default_factory=BoshConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    vcard: VcardConfig = field(default_factory=VcardConfig)
    private_storage: PrivateStorageConfig = field(default_factory=PrivateStorageConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    csi: CsiConfig = field(default_factory=CsiConfig)
    push: PushConfig = field(default_factory=PushConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under ``data_dir``."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_path / 'xmppd.sqlite3').absolute()}"

    @property
    def admin_socket_path(self) -> Path:
        """The configured admin socket, or ``admin.sock`` in ``data_dir`` (absolute)."""
        return Path(self.admin.socket or self.data_path / "admin.sock").absolute()

    def validate(self) -> None:
        """What spans sections; each section has checked itself already."""
        self._validate_buffers()
        self._validate_roster_fits()
        self._validate_component_domains()
        self._validate_admin_socket()

    def _validate_buffers(self) -> None:
        """Every buffer holds at least one stanza of the largest size allowed."""
        stanza = self.limits.max_stanza_size
        for key, size in (
            ("http.max_body_size", self.http.max_body_size),
            ("bosh.max_buffer_bytes", self.bosh.max_buffer_bytes),
            ("c2s.send_queue_bytes", self.c2s.send_queue_bytes),
            ("component_listener.send_queue_bytes", self.component_listener.send_queue_bytes),
        ):
            if size < stanza:
                raise ConfigError(f"{key}: must be at least limits.max_stanza_size")

    def _validate_roster_fits(self) -> None:
        # Half of the smaller queue: a roster result never cuts off a client, even one that
        # has other stanzas waiting (c2s/WebSocket queue, BOSH buffer).
        roster = self.roster
        queue = min(self.c2s.send_queue_bytes, self.bosh.max_buffer_bytes)
        needed = roster.max_items * roster.max_item_bytes + ROSTER_ENVELOPE_BYTES
        if needed > queue // 2:
            raise ConfigError(
                f"roster.max_items * roster.max_item_bytes: a full roster ({needed} bytes) must"
                f" fit in half of c2s.send_queue_bytes / bosh.max_buffer_bytes ({queue // 2})"
            )

    def _validate_component_domains(self) -> None:
        taken = {self.server.domain}
        if self.muc.enabled:
            taken.add(self.muc.service_host(self.server.domain))
        for i, comp in enumerate(self.components):
            if comp.domain in taken:
                raise ConfigError(
                    f"components[{i}].domain: {comp.domain} is already served (server, MUC or"
                    " another component)"
                )
            taken.add(comp.domain)

    def _validate_admin_socket(self) -> None:
        if not self.admin.enabled:
            return
        path = os.fsencode(self.admin_socket_path)
        if len(path) > UNIX_PATH_MAX:
            raise ConfigError(
                f"admin.socket: {self.admin_socket_path} is {len(path)} bytes, more than the "
                f"{UNIX_PATH_MAX} a UNIX socket path may have; set a shorter admin.socket"
            )


#: Room a roster result needs besides its items (iq, query, the full JID it goes to).
ROSTER_ENVELOPE_BYTES = 4096

#: Longest path a UNIX socket address holds (``sun_path`` is 108 bytes with the NUL).
UNIX_PATH_MAX = 107

ENV_PREFIX = "XMPPD_"
_COMPONENT_SECRET = re.compile(r"XMPPD_COMPONENT_([A-Z0-9_]+)_SECRET")


def component_env_key(domain: str) -> str:
    """``irc.localhost`` -> ``IRC_LOCALHOST`` (for ``XMPPD_COMPONENT_<KEY>_SECRET``)."""
    return re.sub(r"[^A-Z0-9]", "_", domain.upper())


def _not_a_key(name: str) -> bool:
    """XMPPD_ variables that are not ``<SECTION>_<KEY>`` overrides."""
    if name == "XMPPD_CONFIG":
        return True
    return _is_component_secret(name)


def _is_component_secret(name: str) -> bool:
    return _COMPONENT_SECRET.fullmatch(name) is not None and not name.startswith(
        "XMPPD_COMPONENT_LISTENER_"
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read ``path`` (if given), apply env overrides and ``overrides``, validate."""
    environ = os.environ if environ is None else environ
    config = settings.read(
        Config,
        prefix=ENV_PREFIX,
        path=path,
        environ=environ,
        overrides=overrides,
        skip_env=_not_a_key,
    )
    _component_secrets(config, environ)
    validate(config)
    return config


def _component_secrets(config: Config, environ: typing.Mapping[str, str]) -> None:
    """Apply ``XMPPD_COMPONENT_<DOMAIN>_SECRET``; one naming no component is a typo."""
    by_key = {component_env_key(c.domain): c for c in config.components}
    for name, value in environ.items():
        m = _COMPONENT_SECRET.fullmatch(name)
        if m is None or not _is_component_secret(name):
            continue
        component = by_key.get(m.group(1))
        if component is None:
            raise ConfigError(f"{name}: no [[components]] entry has that domain")
        component.secret, component.secret_file = value, ""


def validate(config: Config) -> None:
    """Every section's checks, then :meth:`Config.validate` (may normalise values)."""
    settings.validate(config)
