"""The in-memory history ring of a room and the §7.2.15 selection rules.

Each entry keeps the message exactly as it was broadcast (serialised once, without a
``to``); the join copy with its XEP-0203 ``<delay/>`` is made the first time someone
needs it and cached, so a busy room pays nothing extra per message and a join pays
nothing per history line but a byte splice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lxml import etree

from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

DELAY = "{%s}delay" % ns.DELAY


def format_stamp(when: datetime) -> str:
    """XEP-0082 DateTime in UTC with milliseconds: ``2024-05-06T07:08:09.123Z``."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_stamp(text: str) -> datetime:
    """Parse an XEP-0082 DateTime (a zone is required); ValueError if malformed."""
    text = text.strip()
    if len(text) < 20 or text[10] != "T":
        raise ValueError("not an XEP-0082 DateTime")
    value = datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None:
        raise ValueError("an XEP-0082 DateTime needs a time zone")
    return value.astimezone(UTC)


@dataclass(slots=True)
class HistoryEntry:
    """One groupchat message as broadcast: ``xml`` has no ``to`` attribute."""

    stanza_id: str
    stamp: datetime
    nick: str
    sender: str  #: the real bare JID of the sender
    xml: bytes
    _join: tuple[bytes, bytes, int] | None = field(default=None, repr=False)

    def join_copy(self, room_jid: str) -> tuple[bytes, bytes, int]:
        """``(head, tail, chars)`` of the history copy: splice `` to="…"`` between them."""
        if self._join is None:
            el = etree.fromstring(self.xml)
            delay = etree.SubElement(el, DELAY, nsmap={None: ns.DELAY})
            delay.set("from", room_jid)
            delay.set("stamp", format_stamp(self.stamp))
            data = etree.tostring(el)
            cut = data.index(b" ")
            self._join = (data[:cut], data[cut:], len(data.decode("utf-8")))
        return self._join


@dataclass(slots=True)
class HistoryRequest:
    """The parsed ``<history/>`` element (§7.2.15); None means "not limited by this"."""

    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: datetime | None = None

    @classmethod
    def parse(cls, el: etree._Element | None) -> HistoryRequest:
        """Read the attributes; malformed or negative values are a ``bad-request``."""
        req = cls()
        if el is None:
            return req
        for name in ("maxchars", "maxstanzas", "seconds"):
            raw = el.get(name)
            if raw is None:
                continue
            try:
                value = int(raw.strip())
            except ValueError:
                raise StanzaError("bad-request", f"history {name} must be an integer") from None
            if value < 0:
                raise StanzaError("bad-request", f"history {name} cannot be negative")
            setattr(req, name, value)
        raw_since = el.get("since")
        if raw_since is not None:
            try:
                req.since = parse_stamp(raw_since)
            except ValueError:
                raise StanzaError("bad-request", "history since is not a DateTime") from None
        return req


class HistoryRing:
    """The last ``size`` messages of one room, oldest first."""

    def __init__(self, size: int) -> None:
        self.entries: deque[HistoryEntry] = deque(maxlen=max(0, size))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self.entries)

    def append(self, entry: HistoryEntry) -> None:
        self.entries.append(entry)

    def select(
        self, req: HistoryRequest, default: int, now: datetime, room_jid: str
    ) -> list[HistoryEntry]:
        """The smallest set meeting every given limit (§7.2.15), oldest first.

        ``default`` caps the count when the client gave no ``maxstanzas``; a ``since`` in
        the future simply selects nothing.
        """
        limit = default if req.maxstanzas is None else req.maxstanzas
        if limit <= 0 or req.maxchars == 0:
            return []
        oldest: datetime | None = req.since
        if req.seconds is not None:
            cutoff = now - timedelta(seconds=min(req.seconds, 10**9))
            oldest = cutoff if oldest is None else max(oldest, cutoff)
        picked: list[HistoryEntry] = []
        chars = 0
        for entry in reversed(self.entries):
            if len(picked) >= limit:
                break
            if oldest is not None and entry.stamp < oldest:
                break
            if req.maxchars is not None:
                chars += entry.join_copy(room_jid)[2]
                if chars > req.maxchars:
                    break
            picked.append(entry)
        picked.reverse()
        return picked
