"""webridge configuration: a TOML file and/or ``WEBRIDGE_<SECTION>_<KEY>`` variables.

The seed's bot was configured by environment variables only; that still works (no file
at all), and a TOML file (``webridge.toml.example``) can hold the same keys. Validated
once at start-up so a typo names its key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


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


@dataclass(slots=True)
class SocketConfig:
    #: The UNIX datagram socket the forum writes to.
    path: str = "/run/xmppd-webridge/webridge.sock"
    #: File mode of the socket (octal string or integer); writers need write permission.
    mode: str = "0660"
    #: Group of the socket (e.g. the web server's, "www-data"); empty keeps ours.
    group: str = ""


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


@dataclass(slots=True)
class LogConfig:
    level: str = "INFO"


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


def _coerce(key: str, kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if key == "socket.mode" and isinstance(value, int):
            return oct(value)[2:]
    raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")


def _apply(section_name: str, section: Any, values: Mapping[str, Any]) -> None:
    hints = typing.get_type_hints(type(section))
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{section_name}.{key}: unknown option")
        setattr(section, key, _coerce(f"{section_name}.{key}", hints[key], value))


def load(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    require_secret: bool = True,
) -> Config:
    """Defaults, then the TOML file (if any), then ``WEBRIDGE_<SECTION>_<KEY>``.

    ``require_secret=False`` for the ``say`` client, which only needs the socket path."""
    environ = os.environ if environ is None else environ
    config = Config()
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for name, values in data.items():
            if name not in sections or not isinstance(values, dict):
                raise ConfigError(f"{name}: unknown section")
            _apply(name, sections[name], values)
    for var, value in environ.items():
        if not var.startswith("WEBRIDGE_") or var == "WEBRIDGE_CONFIG":
            continue
        rest = var[len("WEBRIDGE_") :].lower()
        name, _, key = rest.partition("_")
        if name not in sections or not key:
            raise ConfigError(f"{var}: no such option")
        _apply(name, sections[name], {key: value})
    validate(config, require_secret=require_secret)
    return config


def validate(config: Config, *, require_secret: bool = True) -> None:
    x, m = config.xmpp, config.messages
    if not 0 < x.port < 65536:
        raise ConfigError(f"xmpp.port: {x.port} is not a TCP port")
    for key in ("domain", "user", "resource", "room", "nick"):
        if not getattr(x, key).strip():
            raise ConfigError(f"xmpp.{key}: must not be empty")
    if "@" not in x.room or "/" in x.room:
        raise ConfigError(f"xmpp.room: {x.room!r} is not a room address (name@service)")
    if require_secret and not x.secret and not x.secret_file:
        raise ConfigError("xmpp.secret: set secret, secret_file or WEBRIDGE_XMPP_SECRET")
    if not 0 < x.reconnect_initial <= x.reconnect_max:
        raise ConfigError("xmpp.reconnect_initial: need 0 < reconnect_initial <= reconnect_max")
    if x.rejoin_interval <= 0:
        raise ConfigError("xmpp.rejoin_interval: must be positive")
    if not config.socket.path:
        raise ConfigError("socket.path: must not be empty")
    parse_mode(config.socket.mode)
    if m.queue_size < 1:
        raise ConfigError("messages.queue_size: must be at least 1")
    if m.burst < 1 or m.rate <= 0:
        raise ConfigError("messages.burst/rate: need burst >= 1 and rate > 0")
    if m.max_length < 20 or m.field_max_length < 10:
        raise ConfigError("messages.max_length/field_max_length: too small")
    if config.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log.level: {config.log.level!r} is not a log level")
