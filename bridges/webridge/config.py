"""webridge configuration: a TOML file and/or ``WEBRIDGE_<SECTION>_<KEY>`` variables.

The seed's bot was configured by environment variables only; that still works (no file
at all), and a TOML file (``webridge.toml.example``) can hold the same keys. Read by
xmppd's loader (:mod:`xmppd.settings`: the same parsing and refusals as xmppd's own
file) and validated once at start-up, so a typo names its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xmppd import settings
from xmppd.settings import ConfigError

__all__ = ["Config", "ConfigError", "load", "parse_mode"]

ENV_PREFIX = "WEBRIDGE_"


@dataclass(slots=True)
class XmppConfig:
    #: xmppd's component listener ([component_listener] in xmppd.toml).
    host: str = "127.0.0.1"
    port: int = 5347
    #: The component's domain: a [[components]] entry of xmppd.toml.
    domain: str = "webridge.localhost"
    #: The shared secret, or a file holding it (first line).
    secret: str = ""
    secret_file: str = ""
    #: Localpart and resource of the bot's JID inside its domain.
    user: str = "sax"
    resource: str = "webridge"
    #: The room and the nick posted under (the component's muc_nicks must allow it).
    room: str = "sax@conference.localhost"
    nick: str = "SAX"
    #: Reconnect backoff (seconds): exponential with full jitter, from initial to maximum.
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    #: Seconds between join attempts while the room refuses the bot (nick taken…).
    rejoin_interval: float = 15.0

    def validate(self) -> None:
        """Everything but the secret, which only ``run`` needs (see :func:`load`)."""
        if not 0 < self.port < 65536:
            raise ConfigError.at("port", f"{self.port} is not a TCP port")
        for key in ("domain", "user", "resource", "room", "nick"):
            if not getattr(self, key).strip():
                raise ConfigError.at(key, "must not be empty")
        if "@" not in self.room or "/" in self.room:
            raise ConfigError.at("room", f"{self.room!r} is not a room address (name@service)")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise ConfigError.at("reconnect_initial", "need 0 < reconnect_initial <= reconnect_max")
        if self.rejoin_interval <= 0:
            raise ConfigError.at("rejoin_interval", "must be positive")


@dataclass(slots=True)
class SocketConfig:
    #: The UNIX datagram socket the forum writes to.
    path: str = "/run/xmppd-webridge/webridge.sock"
    #: File mode of the socket (octal string or integer); writers need write permission.
    mode: str | int = "0660"
    #: Group of the socket (e.g. the web server's, "www-data"); empty keeps ours.
    group: str = ""

    def validate(self) -> None:
        if not self.path:
            raise ConfigError.at("path", "must not be empty")
        parse_mode(self.mode)


@dataclass(slots=True)
class MessagesConfig:
    #: Events kept while the room is unreachable; beyond it the oldest are dropped (logged).
    queue_size: int = 1000
    #: Pacing so the room's flood limit (muc.flood_burst/flood_rate) never refuses us:
    #: a burst of this many messages...
    burst: int = 10
    #: ...then this many per second.
    rate: float = 2.0
    #: Longest message, in characters (longer ones end in "…").
    max_length: int = 1000
    #: Longest name, forum or title inside a message, in characters.
    field_max_length: int = 300

    def validate(self) -> None:
        if self.queue_size < 1:
            raise ConfigError.at("queue_size", "must be at least 1")
        if self.burst < 1 or self.rate <= 0:
            raise ConfigError.at("burst/rate", "need burst >= 1 and rate > 0")
        if self.max_length < 20 or self.field_max_length < 10:
            raise ConfigError.at("max_length/field_max_length", "too small")


@dataclass(slots=True)
class LogConfig:
    level: str = "INFO"

    def validate(self) -> None:
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError.at("level", f"{self.level!r} is not a log level")


@dataclass(slots=True)
class Config:
    xmpp: XmppConfig = field(default_factory=XmppConfig)
    socket: SocketConfig = field(default_factory=SocketConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def jid(self) -> str:
        return f"{self.xmpp.user}@{self.xmpp.domain}/{self.xmpp.resource}"

    @property
    def socket_mode(self) -> int:
        return parse_mode(self.socket.mode)

    def read_secret(self) -> str:
        """The component secret (``secret`` wins over ``secret_file``)."""
        if self.xmpp.secret:
            return self.xmpp.secret
        try:
            lines = Path(self.xmpp.secret_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"xmpp.secret_file: {exc.strerror}: {self.xmpp.secret_file}"
            ) from None
        return lines[0].strip() if lines else ""


def parse_mode(value: str | int) -> int:
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(value, 8)
        except ValueError:
            raise ConfigError(f"socket.mode: {value!r} is not an octal file mode") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"socket.mode: {value!r} is not a file mode")
    if mode & 0o007:
        raise ConfigError(f"socket.mode: {oct(mode)} lets every local user write; drop 'other'")
    return mode


def load(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    require_secret: bool = True,
) -> Config:
    """Defaults, then the TOML file (if any), then ``WEBRIDGE_<SECTION>_<KEY>``.

    ``require_secret=False`` for the ``say`` client, which only needs the socket path."""
    config = settings.load(
        Config,
        prefix=ENV_PREFIX,
        path=path,
        environ=environ,
        skip_env=lambda name: name == "WEBRIDGE_CONFIG",
    )
    if require_secret and not config.xmpp.secret and not config.xmpp.secret_file:
        raise ConfigError("xmpp.secret: set secret, secret_file or WEBRIDGE_XMPP_SECRET")
    return config
