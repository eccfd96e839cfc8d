"""IRC client state machine, sans-IO: registration, CAP/SASL, nick fallback, PING/lag.

The trio shell feeds it parsed lines and the time; it answers with lines to send
(``take_output``) and events for the relay (``take_events``). One instance per connection
attempt, so no state leaks from a dead connection into the next.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from bridges.irc.protocol import Line, make
from bridges.irc.text import is_ctcp, parse_ctcp_action

NICK_ERRORS = {"431", "432", "433", "436", "437"}
SASL_FAILED = {"902", "904", "905", "906", "907", "908"}


# ------------------------------------------------------------------------------ events
@dataclass
class Registered:
    nick: str


@dataclass
class Message:
    nick: str
    target: str
    text: str
    action: bool = False
    time: datetime | None = None


@dataclass
class Joined:
    nick: str
    channel: str


@dataclass
class Parted:
    nick: str
    channel: str
    reason: str = ""


@dataclass
class Quit:
    nick: str
    reason: str = ""


@dataclass
class Kicked:
    channel: str
    nick: str
    by: str
    reason: str = ""


@dataclass
class NickChanged:
    old: str
    new: str


@dataclass
class ChannelJoined:
    """We are in the channel (our own JOIN echoed)."""

    channel: str


@dataclass
class ServerError:
    """ERROR from the server, or the lag check failed: the connection is finished."""

    reason: str


@dataclass
class Notice:
    """Something worth a log line (SASL failure, channel join refused …)."""

    event: str
    detail: str


Event = (
    Registered
    | Message
    | Joined
    | Parted
    | Quit
    | Kicked
    | NickChanged
    | ChannelJoined
    | ServerError
    | Notice
)


@dataclass
class ClientSettings:
    nick: str
    fallback_nicks: list[str] = field(default_factory=list)
    username: str = "xmppd"
    realname: str = "xmppd IRC bridge"
    password: str = ""  # server PASS
    sasl_username: str = ""
    sasl_password: str = ""
    channels: list[tuple[str, str]] = field(default_factory=list)  # (channel, key)
    ping_interval: float = 60.0
    ping_timeout: float = 30.0
    nick_reclaim_interval: float = 60.0
    register_timeout: float = 60.0


def parse_server_time(value: str) -> datetime | None:
    """IRCv3 server-time tag (``2026-11-28T10:00:00.123Z``); None if malformed."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class IrcClient:
    """One connection's protocol state. ``connection_made`` starts registration."""

    WANTED_CAPS = ("server-time", "message-tags")

    def __init__(self, settings: ClientSettings, now: float) -> None:
        self.s = settings
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self.nick = settings.nick
        self._nick_choices = [settings.nick, *settings.fallback_nicks]
        self._nick_index = 0
        self.registered = False
        self.caps_offered: dict[str, str] = {}
        self.caps_enabled: set[str] = set()
        self._cap_done = False
        self._last_activity = now
        self._created = now
        self._ping_sent_at: float | None = None
        self._ping_token = ""
        self._last_ping_done = now
        self._last_reclaim = now
        self.lag: float | None = None
        self.finished = False

    # -------------------------------------------------------------- output / events
    def take_output(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    def _send(self, command: str, *params: str) -> None:
        self._out.append(make(command, *params))

    # -------------------------------------------------------------- registration
    def connection_made(self) -> None:
        if self.s.password:
            self._send("PASS", self.s.password)
        self._send("CAP", "LS", "302")
        self._send("NICK", self.nick)
        self._send("USER", self.s.username, "0", "*", self.s.realname)

    def _next_nick(self) -> str:
        self._nick_index += 1
        if self._nick_index < len(self._nick_choices):
            return self._nick_choices[self._nick_index]
        extra = self._nick_index - len(self._nick_choices) + 1
        base = self.s.nick[: max(1, 30 - extra)]
        return base + "_" * extra

    def join_channels(self) -> None:
        """JOINs for every channel, one line each (so one bad key fails alone)."""
        for channel, key in self.s.channels:
            if key:
                self._send("JOIN", channel, key)
            else:
                self._send("JOIN", channel)

    # -------------------------------------------------------------- input
    def receive(self, line: Line, now: float) -> None:
        """Process one line from the server."""
        self._last_activity = now
        handler = getattr(self, "_on_" + line.command.lower(), None)
        if handler is not None:
            handler(line, now)
        elif line.command in NICK_ERRORS:
            self._on_nick_error(line)
        elif line.command in SASL_FAILED:
            self._events.append(Notice("irc_sasl_failed", line.param(-1)))
            self._cap_end()
        elif line.command == "903":
            self._cap_end()
        elif line.command in ("471", "473", "474", "475", "403", "405"):
            self._events.append(Notice("irc_join_refused", " ".join(line.params[1:])))

    def _on_ping(self, line: Line, now: float) -> None:
        self._out.insert(0, make("PONG", *(line.params or [""])))

    def _on_pong(self, line: Line, now: float) -> None:
        if self._ping_sent_at is not None and self._ping_token in line.params:
            self.lag = now - self._ping_sent_at
            self._ping_sent_at = None
            self._last_ping_done = now

    def _on_error(self, line: Line, now: float) -> None:
        self.finished = True
        self._events.append(ServerError(line.param(-1) or "ERROR"))

    def _on_cap(self, line: Line, now: float) -> None:
        sub = line.param(1).upper()
        if sub == "LS":
            more = len(line.params) >= 4 and line.params[2] == "*"
            for item in line.param(-1).split():
                name, _, value = item.partition("=")
                self.caps_offered[name] = value
            if more or self._cap_done:
                return
            wanted = [c for c in self.WANTED_CAPS if c in self.caps_offered]
            if self.s.sasl_username and "sasl" in self.caps_offered:
                mechs = self.caps_offered["sasl"]
                if not mechs or "PLAIN" in mechs.upper().split(","):
                    wanted.append("sasl")
                else:
                    self._events.append(Notice("irc_sasl_failed", "PLAIN not offered"))
            elif self.s.sasl_username:
                self._events.append(Notice("irc_sasl_failed", "server offers no SASL"))
            if wanted:
                self._send("CAP", "REQ", " ".join(wanted))
            else:
                self._cap_end()
        elif sub == "ACK":
            acked = {c.lstrip("-~=") for c in line.param(-1).split()}
            self.caps_enabled |= acked
            if "sasl" in acked and self.s.sasl_username:
                self._send("AUTHENTICATE", "PLAIN")
            else:
                self._cap_end()
        elif sub == "NAK":
            self._cap_end()

    def _on_authenticate(self, line: Line, now: float) -> None:
        if line.param(0) != "+":
            return
        user = self.s.sasl_username
        blob = f"{user}\0{user}\0{self.s.sasl_password}".encode()
        encoded = base64.b64encode(blob).decode("ascii")
        chunks = [encoded[i : i + 400] for i in range(0, len(encoded), 400)]
        for chunk in chunks:
            self._send("AUTHENTICATE", chunk)
        if not chunks or len(chunks[-1]) == 400:
            self._send("AUTHENTICATE", "+")

    def _cap_end(self) -> None:
        if not self._cap_done:
            self._cap_done = True
            self._send("CAP", "END")

    def _on_001(self, line: Line, now: float) -> None:
        self.registered = True
        self._cap_done = True
        if line.params:
            self.nick = line.params[0]
        self._last_reclaim = now
        self._last_ping_done = now
        self._events.append(Registered(self.nick))
        self.join_channels()

    def _on_nick_error(self, line: Line) -> None:
        if self.registered:
            return  # a failed reclaim: keep the nick we have
        self.nick = self._next_nick()
        self._events.append(Notice("irc_nick_in_use", f"trying {self.nick}"))
        self._send("NICK", self.nick)

    def _is_me(self, nick: str | None) -> bool:
        return nick is not None and nick.casefold() == self.nick.casefold()

    def _on_nick(self, line: Line, now: float) -> None:
        old, new = line.nick or "", line.param(0)
        if self._is_me(old):
            self.nick = new
            return
        self._events.append(NickChanged(old, new))

    def _on_join(self, line: Line, now: float) -> None:
        channel = line.param(0)
        if self._is_me(line.nick):
            self._events.append(ChannelJoined(channel))
        else:
            self._events.append(Joined(line.nick or "", channel))

    def _on_part(self, line: Line, now: float) -> None:
        if not self._is_me(line.nick):
            self._events.append(Parted(line.nick or "", line.param(0), line.param(1)))

    def _on_quit(self, line: Line, now: float) -> None:
        if not self._is_me(line.nick):
            self._events.append(Quit(line.nick or "", line.param(0)))

    def _on_kick(self, line: Line, now: float) -> None:
        channel, target = line.param(0), line.param(1)
        self._events.append(Kicked(channel, target, line.nick or "", line.param(2)))
        if self._is_me(target):
            key = dict(self.s.channels).get(channel, "")
            if key:
                self._send("JOIN", channel, key)
            else:
                self._send("JOIN", channel)

    def _on_privmsg(self, line: Line, now: float) -> None:
        if len(line.params) < 2 or self._is_me(line.nick):
            return  # our own echo (echo-message, bouncers) never goes back into the room
        text = line.params[1]
        action = parse_ctcp_action(text)
        if action is None and is_ctcp(text):
            return  # VERSION, PING … : CTCP queries are not chat
        stamp = parse_server_time(line.tags["time"]) if "time" in line.tags else None
        self._events.append(
            Message(
                nick=line.nick or "",
                target=line.params[0],
                text=action if action is not None else text,
                action=action is not None,
                time=stamp,
            )
        )

    # -------------------------------------------------------------- time
    def tick(self, now: float) -> float:
        """Lag check and nick reclaim; returns seconds until the next tick is useful."""
        if self.finished:
            return 1.0
        if not self.registered:
            if now - self._created >= self.s.register_timeout:
                self.finished = True
                self._events.append(ServerError("registration timed out"))
            return max(0.05, min(1.0, self._created + self.s.register_timeout - now))
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self.s.ping_timeout:
                self.finished = True
                waited = now - self._ping_sent_at
                self._events.append(ServerError(f"no PONG within {waited:.1f}s"))
                return 1.0
            return max(0.05, self._ping_sent_at + self.s.ping_timeout - now)
        if now - self._last_ping_done >= self.s.ping_interval:
            self._ping_token = f"lag{int(now * 1000)}"
            self._ping_sent_at = now
            self._send("PING", self._ping_token)
            return max(0.05, self.s.ping_timeout)
        if (
            self.s.nick_reclaim_interval > 0
            and self.nick.casefold() != self.s.nick.casefold()
            and now - self._last_reclaim >= self.s.nick_reclaim_interval
        ):
            self._last_reclaim = now
            self._send("NICK", self.s.nick)
        return max(0.05, self._last_ping_done + self.s.ping_interval - now)
