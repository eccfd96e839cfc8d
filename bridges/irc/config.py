"""Configuration of the IRC bridge: a TOML file, overridden by ``IRCBRIDGE_<SECTION>_<KEY>``
environment variables (the seed's bots were configured by environment only).

Every option is documented in ``bridges/irc/irc.toml.example`` with its default (a unit
test checks the two agree). Read by xmppd's loader (:mod:`xmppd.settings`: the same
parsing and refusals as xmppd's own file). Secrets are excluded from ``repr`` so they
never reach a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xmppd import settings
from xmppd.settings import ConfigError

__all__ = ["BridgeConfig", "ConfigError", "load", "parse_server"]

ENV_PREFIX = "IRCBRIDGE_"


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

    def validate(self) -> None:
        """Reads ``secret_file`` (first line) into ``secret`` unless a secret is given."""
        if self.secret_file and not self.secret:
            try:
                lines = Path(self.secret_file).read_text(encoding="utf-8").splitlines()
                self.secret = lines[0].strip()
            except (OSError, IndexError) as exc:
                raise ConfigError.at("secret_file", f"cannot read: {exc}") from None
        for key in ("domain", "secret", "room", "nick"):
            if not getattr(self, key):
                raise ConfigError.at(key, "required")
        if "@" not in self.room or "/" in self.room:
            raise ConfigError.at("room", "expected a bare room JID like room@conference.example")
        for key in ("room_burst", "queue_size", "dedup_size"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        for key in ("room_rate", "self_ping_interval", "self_ping_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError.at(key, "must be positive")
        if self.history_max_age < 0 or self.history_overlap < 0:
            raise ConfigError.at("history_max_age/history_overlap", "must not be negative")


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

    def validate(self) -> None:
        for key in ("nick", "channel"):
            if not getattr(self, key):
                raise ConfigError.at(key, "required")
        if not self.servers:
            raise ConfigError.at("servers", "at least one server is required")
        for entry in self.servers:
            parse_server(entry, self.tls)
        if self.channel[0] not in "#&+!":
            raise ConfigError.at("channel", "must start with #, &, + or !")
        if any(c in self.nick for c in " ,*?!@"):
            raise ConfigError.at("nick", "not a valid IRC nick")
        for key in ("flood_burst", "queue_size", "max_lines"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        for key in (
            "flood_rate", "ping_interval", "ping_timeout", "connect_timeout", "register_timeout",
        ):  # fmt: skip
            if getattr(self, key) <= 0:
                raise ConfigError.at(key, "must be positive")
        if min(self.reconnect_floor, self.reconnect_initial, self.reconnect_max) < 0:
            raise ConfigError.at("reconnect_*", "must not be negative")


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


def load(path: Path | None, environ: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read ``path`` (optional), apply ``IRCBRIDGE_<SECTION>_<KEY>`` overrides, validate."""
    return settings.load(BridgeConfig, prefix=ENV_PREFIX, path=path, environ=environ)
