"""Configuration of the IRC bridge: a TOML file, overridden by ``IRCBRIDGE_<SECTION>_<KEY>``
environment variables (the seed's bots were configured by environment only).

Every option is documented in ``bridges/irc/irc.toml.example`` with its default (a unit
test checks the two agree). Secrets are excluded from ``repr`` so they never reach a log.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    pass


@dataclass
class XmppSection:
    #: xmppd's component listener.
    host: str = "127.0.0.1"
    port: int = 5347
    #: The component's domain, as configured in xmppd's [[components]].
    domain: str = ""
    secret: str = field(default="", repr=False)
    secret_file: str = ""
    #: The bridged room (bare JID) and the bridge's nick in it.
    room: str = ""
    nick: str = "IRC"
    #: The component's own JID used as the occupant's real JID; empty: bridge@<domain>/irc.
    jid: str = ""
    #: XEP-0410 self-ping period and answer timeout (seconds).
    self_ping_interval: float = 60.0
    self_ping_timeout: float = 30.0
    #: History asked for on a rejoin: at most this many messages since the last seen one,
    #: starting this many seconds earlier (clock skew; the overlap is deduplicated).
    history_maxstanzas: int = 200
    history_overlap: float = 60.0
    #: ...but never older than this many seconds (0: no limit): after a long outage the
    #: channel gets the recent past, not a day of backlog.
    history_max_age: float = 3600.0
    #: Seconds before rejoining after a moderator's kick (307); technical removals (333)
    #: and failed self-pings rejoin at once; bans (301) never.
    kick_rejoin_delay: float = 60.0
    #: Where the last seen message time and recent stanza-ids are kept ("" = memory only).
    state_file: str = ""
    #: Recent stanza-ids kept for de-duplication.
    dedup_size: int = 500
    #: Messages into the room: a burst of this many, then this many per second (stay
    #: under the room's own flood limit).
    room_burst: int = 20
    room_rate: float = 4.0
    #: Bounded queue towards XMPP (component client) and its reconnect backoff.
    queue_size: int = 1000
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0


@dataclass
class IrcSection:
    #: "host:port" entries, tried in turn; a failure moves on to the next one.
    servers: list[str] = field(default_factory=list)
    tls: bool = True
    #: Verify the server's certificate (only turn off for a test network).
    tls_verify: bool = True
    nick: str = "saxjax"
    #: Nicks to try when ours is taken (433); after these, "_" suffixes.
    fallback_nicks: list[str] = field(default_factory=list)
    username: str = "saxjax"
    realname: str = "xmppd IRC bridge"
    #: Server password (PASS), empty for none.
    password: str = field(default="", repr=False)
    #: SASL PLAIN credentials; empty username disables SASL.
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    channel: str = ""
    channel_key: str = field(default="", repr=False)
    connect_timeout: float = 20.0
    #: Seconds without 001 after connecting before giving up on a server.
    register_timeout: float = 60.0
    #: Lag check: PING the server this often; no PONG within ping_timeout -> reconnect.
    ping_interval: float = 60.0
    ping_timeout: float = 30.0
    #: Reconnect delay = floor + random(0, min(max, initial * 2**failures)). The floor
    #: stays above the server's ghost-reaping window, so our old connection is gone
    #: before the new one asks for the nick.
    reconnect_floor: float = 20.0
    reconnect_initial: float = 2.0
    reconnect_max: float = 300.0
    #: Try to get the configured nick back this often while on a fallback (0: never).
    nick_reclaim_interval: float = 60.0
    #: Flood control: a burst of this many lines, then this many lines per second.
    flood_burst: int = 10
    flood_rate: float = 1.0
    #: Lines waiting for the flood control; more are dropped and the count reported.
    queue_size: int = 100
    #: IRC lines one room message may become; the rest is "(… N more lines)".
    max_lines: int = 5


@dataclass
class RelaySection:
    #: Relay joins and parts (both ways).
    joins_parts: bool = False
    #: Put a zero-width joiner into relayed nicks so nobody is highlighted by accident.
    nick_protection: bool = False
    log_level: str = "INFO"


@dataclass
class BridgeConfig:
    xmpp: XmppSection = field(default_factory=XmppSection)
    irc: IrcSection = field(default_factory=IrcSection)
    relay: RelaySection = field(default_factory=RelaySection)

    @property
    def bot_jid(self) -> str:
        return self.xmpp.jid or f"bridge@{self.xmpp.domain}/irc"

    @property
    def occupant_jid(self) -> str:
        return f"{self.xmpp.room}/{self.xmpp.nick}"

    def server_list(self) -> list[tuple[str, int]]:
        return [parse_server(s, self.irc.tls) for s in self.irc.servers]


def parse_server(entry: str, tls: bool) -> tuple[str, int]:
    entry = entry.strip()
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = rest.lstrip(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    if not host:
        raise ConfigError(f"irc.servers: empty host in {entry!r}")
    try:
        number = int(port) if port else (6697 if tls else 6667)
    except ValueError:
        raise ConfigError(f"irc.servers: bad port in {entry!r}") from None
    if not 0 < number < 65536:
        raise ConfigError(f"irc.servers: bad port in {entry!r}")
    return host, number


def _coerce(section: str, key: str, typ: Any, value: Any, from_env: bool) -> Any:
    name = f"{section}.{key}"
    if typ is bool:
        if isinstance(value, bool):
            return value
        if from_env and str(value).strip().lower() in ("1", "true", "yes", "on"):
            return True
        if from_env and str(value).strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: expected true or false")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number") from None
    if typ == list[str]:
        if from_env and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings")
        return list(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string")
    return value


def load(path: Path | None, environ: dict[str, str] | None = None) -> BridgeConfig:
    """Read ``path`` (optional), apply env overrides, validate."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    cfg = BridgeConfig()
    for section_field in dataclasses.fields(cfg):
        sname = section_field.name
        section = getattr(cfg, sname)
        hints = get_type_hints(type(section))
        raw = data.get(sname, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{sname}] must be a table")
        known = {f.name for f in dataclasses.fields(section)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"[{sname}]: unknown option(s) {', '.join(sorted(unknown))}")
        for key in known:
            env_name = f"IRCBRIDGE_{sname}_{key}".upper()
            if env_name in env:
                value = _coerce(sname, key, hints[key], env[env_name], True)
            elif key in raw:
                value = _coerce(sname, key, hints[key], raw[key], False)
            else:
                continue
            setattr(section, key, value)
    validate(cfg)
    return cfg


def validate(cfg: BridgeConfig) -> None:
    x, i = cfg.xmpp, cfg.irc
    if x.secret_file and not x.secret:
        try:
            x.secret = Path(x.secret_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ConfigError(f"xmpp.secret_file: cannot read: {exc}") from None
    for name, value in (
        ("xmpp.domain", x.domain),
        ("xmpp.secret", x.secret),
        ("xmpp.room", x.room),
        ("xmpp.nick", x.nick),
        ("irc.nick", i.nick),
        ("irc.channel", i.channel),
    ):
        if not value:
            raise ConfigError(f"{name}: required")
    if "@" not in x.room or "/" in x.room:
        raise ConfigError("xmpp.room: expected a bare room JID like room@conference.example")
    if not i.servers:
        raise ConfigError("irc.servers: at least one server is required")
    cfg.server_list()  # validates each entry
    if i.channel[0] not in "#&+!":
        raise ConfigError("irc.channel: must start with #, &, + or !")
    if any(c in i.nick for c in " ,*?!@"):
        raise ConfigError("irc.nick: not a valid IRC nick")
    for name, value in (
        ("irc.flood_burst", i.flood_burst),
        ("irc.queue_size", i.queue_size),
        ("irc.max_lines", i.max_lines),
        ("xmpp.room_burst", x.room_burst),
        ("xmpp.queue_size", x.queue_size),
        ("xmpp.dedup_size", x.dedup_size),
    ):
        if value < 1:
            raise ConfigError(f"{name}: must be at least 1")
    for name, fvalue in (
        ("irc.flood_rate", i.flood_rate),
        ("xmpp.room_rate", x.room_rate),
        ("irc.ping_interval", i.ping_interval),
        ("irc.ping_timeout", i.ping_timeout),
        ("xmpp.self_ping_interval", x.self_ping_interval),
        ("xmpp.self_ping_timeout", x.self_ping_timeout),
        ("irc.connect_timeout", i.connect_timeout),
        ("irc.register_timeout", i.register_timeout),
    ):
        if fvalue <= 0:
            raise ConfigError(f"{name}: must be positive")
    if x.history_max_age < 0 or x.history_overlap < 0:
        raise ConfigError("xmpp.history_max_age/history_overlap: must not be negative")
    if i.reconnect_floor < 0 or i.reconnect_initial < 0 or i.reconnect_max < 0:
        raise ConfigError("irc.reconnect_*: must not be negative")
