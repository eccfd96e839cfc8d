"""``[bosh]``: the server's ceilings for BOSH sessions (XEP-0124 §7.1).

The section itself is what :class:`~xmppd.bosh.session.BoshSession` clamps a client's
wishes to, so the TOML key, its default and the session rule are one field. Sans-IO like
the session: it imports no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from xmppd.settings import ConfigError


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

    def validate(self) -> None:
        for key in ("max_wait", "max_inactivity", "max_sessions"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        for key in ("max_hold", "polling", "max_pause"):
            if getattr(self, key) < 0:
                raise ConfigError.at(key, "must not be negative")
        if self.gap_grace <= 0:
            raise ConfigError.at("gap_grace", "must be positive")
