"""One typed configuration: a TOML file plus ``XMPPD_<SECTION>_<KEY>`` environment overrides.

Validated once at start-up (``xmppd check-config``) so a typo is an error with the
offending key named, never a surprise at the first login.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xmppd.muc.config import MucConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


@dataclass(slots=True)
class ServerConfig:
    domain: str = "localhost"
    data_dir: str = "var"
    admins: list[str] = field(default_factory=list)
    #: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    log_level: str = "INFO"
    #: Seconds between returning freed heap pages to the OS (0 disables).
    memory_trim_interval: float = 5.0


@dataclass(slots=True)
class C2SConfig:
    bind: str = "0.0.0.0"  # noqa: S104 - a server listens on all interfaces by default
    port: int = 5222
    direct_tls_port: int = 5223
    require_encryption: bool = True
    allow_plain_on_loopback: bool = True
    handshake_timeout: float = 30.0
    idle_timeout: float = 300.0
    ping_interval: float = 120.0
    ping_timeout: float = 60.0
    #: Longest one write to a client may take (s): a peer that stops reading while the
    #: kernel's buffers are full is cut off instead of holding its connection forever.
    send_timeout: float = 60.0
    #: Idle seconds after which a stream drops its parser buffers and writer task.
    hibernate_after: float = 2.0
    #: Connections at once from one address over c2s, direct TLS and HTTP together (a
    #: BOSH session counts one more; see xmppd.bosh.serving for what counts).
    max_connections_per_ip: int = 64
    send_queue_bytes: int = 1_048_576


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


@dataclass(slots=True)
class TLSConfig:
    cert: str = ""
    key: str = ""


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


@dataclass(slots=True)
class OfflineConfig:
    """Messages kept for accounts without an available resource (XEP-0160)."""

    #: Messages kept per account; more are bounced with service-unavailable.
    max_messages: int = 500


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


@dataclass(slots=True)
class AuthConfig:
    backend: Literal["internal", "phpbb"] = "internal"
    phpbb: PhpbbConfig = field(default_factory=PhpbbConfig)


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


@dataclass(slots=True)
class BoshConfig:
    """BOSH (XEP-0124/0206) at ``/http-bind``: ceilings for what clients may ask for."""

    #: Longest a request is held (s); clients asking for more get this (``wait``).
    max_wait: int = 60
    #: Most requests held at once per session (``hold``; ``requests`` = hold + 1).
    max_hold: int = 1
    #: Seconds without a request (none held) before the session and its XMPP session end.
    max_inactivity: int = 60
    #: Shortest polling interval (s) advertised; enforced for polling sessions (hold 0).
    polling: int = 2
    #: Longest pause (s) a client may ask for (``maxpause``, e.g. across a page change).
    max_pause: int = 120
    #: Sessions at once on this server; more get HTTP 503.
    max_sessions: int = 10_000
    #: Bytes buffered for a client between its requests before it is dropped.
    max_buffer_bytes: int = 1_048_576
    #: Seconds a missing rid may hold later requests back before it counts as lost (a
    #: page reload can abort a request the browser never sent).
    gap_grace: float = 4.0


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
    component_listener: ComponentListenerConfig = field(default_factory=ComponentListenerConfig)
    components: list[ComponentConfig] = field(default_factory=list)
    http: HttpConfig = field(default_factory=HttpConfig)
    bosh: BoshConfig = field(default_factory=BoshConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)

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


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return _build(typ, value, key)
    if origin is Literal:
        if value not in typing.get_args(typ):
            allowed = ", ".join(repr(a) for a in typing.get_args(typ))
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if origin is list:
        (item,) = typing.get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list")
        return [_coerce(v, item, f"{key}[]") for v in value]
    if typ is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{prefix or 'top level'}: unknown key(s) {', '.join(sorted(unknown))}")
    kwargs = {
        name: _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
        for name, value in data.items()
    }
    return cls(**kwargs)


_SECTIONS = sorted((f.name for f in dataclasses.fields(Config)), key=len, reverse=True)
_COMPONENT_SECRET = re.compile(r"XMPPD_COMPONENT_([A-Z0-9_]+)_SECRET")


def component_env_key(domain: str) -> str:
    """``irc.localhost`` -> ``IRC_LOCALHOST`` (for ``XMPPD_COMPONENT_<KEY>_SECRET``)."""
    return re.sub(r"[^A-Z0-9]", "_", domain.upper())


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[str, Any]:
    """``XMPPD_C2S_PORT=5522`` -> ``{"c2s": {"port": "5522"}}``; ``__`` nests deeper.

    Section names may contain ``_`` (``XMPPD_COMPONENT_LISTENER_PORT``): the longest
    section name that prefixes the variable wins. Component secrets are not sections;
    :func:`_component_secrets` handles them.
    """
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("XMPPD_") or name in ("XMPPD_CONFIG",):
            continue
        rest = name[len("XMPPD_") :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is not None:
            key = rest[len(section) + 1 :]
        else:
            if _COMPONENT_SECRET.fullmatch(name):
                continue
            section, _, key = rest.partition("_")
        if not key:
            continue
        path = [section, *key.split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read ``path`` (if given), apply env overrides and ``overrides``, validate."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    data = _merge(data, _env_overrides(environ))
    if overrides:
        data = _merge(data, overrides)
    config: Config = _build(Config, data, "")
    _component_secrets(config, environ)
    validate(config)
    return config


def _component_secrets(config: Config, environ: typing.Mapping[str, str]) -> None:
    """Apply ``XMPPD_COMPONENT_<DOMAIN>_SECRET``; one naming no component is a typo."""
    by_key = {component_env_key(c.domain): c for c in config.components}
    for name, value in environ.items():
        m = _COMPONENT_SECRET.fullmatch(name)
        if m is None or name.startswith("XMPPD_COMPONENT_LISTENER_"):
            continue
        component = by_key.get(m.group(1))
        if component is None:
            raise ConfigError(f"{name}: no [[components]] entry has that domain")
        component.secret, component.secret_file = value, ""


def _validate_components(config: Config) -> None:
    from xmppd.jid import JIDError, nameprep_domain

    listener = config.component_listener
    if not 0 <= listener.port <= 65535:
        raise ConfigError(f"component_listener.port: {listener.port} is not a TCP port")
    for key in ("max_connections", "max_connections_per_ip"):
        if getattr(listener, key) < 1:
            raise ConfigError(f"component_listener.{key}: must be at least 1")
    if listener.send_queue_bytes < config.limits.max_stanza_size:
        raise ConfigError(
            "component_listener.send_queue_bytes: must be at least limits.max_stanza_size"
        )
    taken = {config.server.domain}
    if config.muc.enabled:
        taken.add(config.muc.service_host(config.server.domain))
    for i, comp in enumerate(config.components):
        key = f"components[{i}]"
        try:
            comp.domain = nameprep_domain(comp.domain)
        except JIDError as exc:
            raise ConfigError(f"{key}.domain: {exc}") from None
        if comp.domain in taken:
            raise ConfigError(
                f"{key}.domain: {comp.domain} is already served (server, MUC or another component)"
            )
        taken.add(comp.domain)
        if comp.secret and comp.secret_file:
            raise ConfigError(f"{key}: give secret or secret_file, not both")
        if comp.secret_file:
            try:
                comp.secret = Path(comp.secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{key}.secret_file: cannot read it ({exc.strerror})") from None
            if not comp.secret:
                raise ConfigError(f"{key}.secret_file: the file is empty")
        if not comp.secret:
            raise ConfigError(
                f"{key}.secret: required (or secret_file, or "
                f"XMPPD_COMPONENT_{component_env_key(comp.domain)}_SECRET)"
            )
        for pattern in comp.muc_nicks:
            if not pattern.strip():
                raise ConfigError(f"{key}.muc_nicks: empty pattern")


def validate(config: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    from xmppd.jid import JID, JIDError, nameprep_domain

    try:
        config.server.domain = nameprep_domain(config.server.domain)
    except JIDError as exc:
        raise ConfigError(f"server.domain: {exc}") from None
    if config.server.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"server.log_level: {config.server.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    for i, seed in enumerate(config.muc.rooms):
        try:
            JID.make(seed.name, "localhost")
        except JIDError as exc:
            raise ConfigError(f"muc.rooms[{i}].name: {exc}") from None
    for port_key in ("port", "direct_tls_port"):
        port = getattr(config.c2s, port_key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"c2s.{port_key}: {port} is not a TCP port")
    for port_key in ("port", "tls_port"):
        port = getattr(config.http, port_key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"http.{port_key}: {port} is not a TCP port")
    prefix = config.http.path_prefix
    if prefix and (not prefix.startswith("/") or prefix.endswith("/") or "?" in prefix):
        raise ConfigError("http.path_prefix: must start with '/' and not end with '/'")
    import ipaddress

    for proxy in config.http.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"http.trusted_proxies: {proxy!r} is not an address") from None
    for allowed in config.http.metrics_allow:
        try:
            ipaddress.ip_network(allowed, strict=False)
        except ValueError:
            raise ConfigError(
                f"http.metrics_allow: {allowed!r} is not an address or network"
            ) from None
    if config.http.forwarded_header not in ("x-forwarded-for", "forwarded"):
        raise ConfigError('http.forwarded_header: must be "x-forwarded-for" or "forwarded"')
    for origin in config.http.cors_origins:
        if origin != "*" and ("://" not in origin or origin.endswith("/")):
            raise ConfigError(f"http.cors_origins: {origin!r} is not scheme://host[:port]")
    for key in ("read_timeout", "keep_alive_timeout"):
        if getattr(config.http, key) <= 0:
            raise ConfigError(f"http.{key}: must be positive")
    if config.limits.max_connections < 0:
        raise ConfigError("limits.max_connections: must not be negative (0 = from the fd limit)")
    if config.http.max_body_size < config.limits.max_stanza_size:
        raise ConfigError("http.max_body_size: must be at least limits.max_stanza_size")
    bosh = config.bosh
    for key in ("max_wait", "max_inactivity", "max_sessions"):
        if getattr(bosh, key) < 1:
            raise ConfigError(f"bosh.{key}: must be at least 1")
    for key in ("max_hold", "polling", "max_pause"):
        if getattr(bosh, key) < 0:
            raise ConfigError(f"bosh.{key}: must not be negative")
    if bosh.gap_grace <= 0:
        raise ConfigError("bosh.gap_grace: must be positive")
    if bosh.max_buffer_bytes < config.limits.max_stanza_size:
        raise ConfigError("bosh.max_buffer_bytes: must be at least limits.max_stanza_size")
    if config.limits.max_stanza_size < 10_000:
        raise ConfigError("limits.max_stanza_size: must be at least 10000 (RFC 6120 §13.12)")
    if bool(config.tls.cert) != bool(config.tls.key):
        raise ConfigError("tls: give both cert and key, or neither (a self-signed pair is made)")
    if config.auth.backend == "phpbb" and not config.auth.phpbb.url:
        raise ConfigError("auth.phpbb.url: required when auth.backend = 'phpbb'")
    interval = config.auth.phpbb.recheck_interval
    if interval != 0 and not 1 <= interval <= 86400:
        raise ConfigError("auth.phpbb.recheck_interval: 0 (off) or 1 to 86400 seconds")
    if config.muc.history_default > config.muc.history_max:
        raise ConfigError("muc.history_default: must not exceed muc.history_max")
    if not 1 <= config.muc.max_nick_length <= 1023:
        raise ConfigError("muc.max_nick_length: must be between 1 and 1023")
    for key in ("max_rooms", "max_rooms_per_user", "room_creations_per_minute"):
        if getattr(config.muc, key) < 1:
            raise ConfigError(f"muc.{key}: must be at least 1 (allow_room_creation turns it off)")
    if config.muc.history_max_bytes < 0:
        raise ConfigError("muc.history_max_bytes: must not be negative")
    if config.muc.invites_per_minute < 0:
        raise ConfigError("muc.invites_per_minute: must not be negative (0: no limit)")
    if not 16 <= config.limits.ipv6_prefix <= 128:
        raise ConfigError("limits.ipv6_prefix: must be between 16 and 128")
    if config.sm.resume_timeout < 1:
        raise ConfigError("sm.resume_timeout: must be at least 1 second")
    if config.sm.request_every < 1:
        raise ConfigError("sm.request_every: must be at least 1")
    if config.sm.max_unacked < 1:
        raise ConfigError("sm.max_unacked: must be at least 1")
    if config.c2s.send_timeout <= 0:
        raise ConfigError("c2s.send_timeout: must be positive")
    if config.c2s.send_queue_bytes < config.limits.max_stanza_size:
        raise ConfigError("c2s.send_queue_bytes: must be at least limits.max_stanza_size")
    _validate_queues(config)
    _validate_components(config)
    _validate_admin(config)


#: Room a roster result needs besides its items (iq, query, the full JID it goes to).
ROSTER_ENVELOPE_BYTES = 4096


def _validate_queues(config: Config) -> None:
    """Per-account limits, and that a whole roster fits what a client may have queued."""
    if config.limits.max_resources < 1:
        raise ConfigError("limits.max_resources: must be at least 1")
    if config.sm.max_detached < 0:
        raise ConfigError("sm.max_detached: must not be negative")
    if config.offline.max_messages < 0:
        raise ConfigError("offline.max_messages: must not be negative")
    roster = config.roster
    for key in ("max_items", "max_name_length", "max_group_length", "max_groups"):
        if getattr(roster, key) < 1:
            raise ConfigError(f"roster.{key}: must be at least 1")
    if roster.max_item_bytes < 512:
        raise ConfigError("roster.max_item_bytes: must be at least 512")
    # Half of the smaller queue: a roster result never cuts off a client, even one that
    # has other stanzas waiting (c2s/WebSocket queue, BOSH buffer).
    queue = min(config.c2s.send_queue_bytes, config.bosh.max_buffer_bytes)
    needed = roster.max_items * roster.max_item_bytes + ROSTER_ENVELOPE_BYTES
    if needed > queue // 2:
        raise ConfigError(
            f"roster.max_items * roster.max_item_bytes: a full roster ({needed} bytes) must fit"
            f" in half of c2s.send_queue_bytes / bosh.max_buffer_bytes ({queue // 2})"
        )


#: Longest path a UNIX socket address holds (``sun_path`` is 108 bytes with the NUL).
UNIX_PATH_MAX = 107


def _validate_admin(config: Config) -> None:
    admin = config.admin
    if admin.timeout <= 0:
        raise ConfigError("admin.timeout: must be positive")
    if admin.group:
        import grp

        try:
            if admin.group.isdigit():
                grp.getgrgid(int(admin.group))
            else:
                grp.getgrnam(admin.group)
        except KeyError:
            raise ConfigError(f"admin.group: no group named {admin.group!r}") from None
        if not admin.socket:
            raise ConfigError(
                "admin.socket: required with admin.group (data_dir is private, so the "
                "group could not reach a socket in it), e.g. /run/xmppd/admin.sock"
            )
    if not admin.enabled:
        return
    path = os.fsencode(config.admin_socket_path)
    if len(path) > UNIX_PATH_MAX:
        raise ConfigError(
            f"admin.socket: {config.admin_socket_path} is {len(path)} bytes, more than the "
            f"{UNIX_PATH_MAX} a UNIX socket path may have; set a shorter admin.socket"
        )
