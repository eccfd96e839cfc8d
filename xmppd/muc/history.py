"""The in-memory history ring of a room and the §7.2.15 selection rules.

Each entry keeps the message exactly as it was broadcast (serialised once, without a
``to``); the join copy with its XEP-0203 ``<delay/>`` is made the first time someone
needs it and cached, so a busy room pays nothing extra per message and a join pays
nothing per history line but a byte splice.
"""

from __future__ import annotations

import re
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


#: XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD (TZD "Z" or +hh:mm / -hh:mm).
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,32}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
#: The range a stamp is clamped to: every supported database stores it (MariaDB's
#: DATETIME starts at year 1000), and nothing outside it can match a message anyway.
STAMP_MIN = datetime(1000, 1, 1, tzinfo=UTC)
STAMP_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def parse_stamp(text: str) -> datetime:
    """Parse an XEP-0082 DateTime (a zone is required) as UTC; ValueError if malformed.

    Valid but extreme values are clamped to [:data:`STAMP_MIN`, :data:`STAMP_MAX`]
    rather than overflowing (``0001-01-01T00:00:00+14:00`` is before year 1 in UTC):
    as a lower or upper bound they select the same messages.
    """
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError("not an XEP-0082 DateTime")
    year, month, day, hour, minute, second, fraction, _z, sign, tz_h, tz_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                     micro)  # fmt: skip
    offset = timedelta(0)
    if sign is not None:
        if int(tz_h) > 23 or int(tz_m) > 59:
            raise ValueError("time zone offset out of range")
        offset = timedelta(hours=int(tz_h), minutes=int(tz_m)) * (1 if sign == "+" else -1)
    floor, ceiling = STAMP_MIN.replace(tzinfo=None), STAMP_MAX.replace(tzinfo=None)
    # local - offset, computed without leaving datetime's range
    if local - floor < offset:
        return STAMP_MIN
    if ceiling - local < -offset:
        return STAMP_MAX
    return (local - offset).replace(tzinfo=UTC)


@dataclass(slots=True)
class HistoryEntry:
    """One groupchat message as broadcast: ``xml`` has no ``to`` attribute."""

    stanza_id: str
    stamp: datetime
    nick: str
    sender: str  #: the real bare JID of the sender
    xml: bytes
    #: the XEP-0359 origin-id its author's client gave ("" if none or over 64 characters):
    #: an author may retract by it (XEP-0424)
    origin_id: str = ""
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
    """The last ``size`` messages of one room, oldest first, within ``max_bytes``.

    Each entry is charged twice its serialised size (the message and the join copy made
    from it), so the bound holds for what the room really keeps. The oldest entries go
    first; a message larger than the whole budget is not kept at all (it is in the
    archive, for MAM). ``max_bytes=None`` means no byte bound.
    """

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self.size = max(0, size)
        self.max_bytes = max_bytes
        self.entries: deque[HistoryEntry] = deque()
        self.bytes = 0
        #: changes with every append and replacement (caches of the ring key on it)
        self.version = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self.entries)

    @staticmethod
    def charge(entry: HistoryEntry) -> int:
        return 2 * len(entry.xml)

    def append(self, entry: HistoryEntry) -> bool:
        """Keep ``entry`` (dropping the oldest as needed); False when it is too large."""
        cost = self.charge(entry)
        if self.size == 0 or (self.max_bytes is not None and cost > self.max_bytes):
            return False
        while self.entries and (
            len(self.entries) >= self.size
            or (self.max_bytes is not None and self.bytes + cost > self.max_bytes)
        ):
            self.bytes -= self.charge(self.entries.popleft())
        self.entries.append(entry)
        self.bytes += cost
        self.version += 1
        return True

    def find(self, stanza_id: str) -> HistoryEntry | None:
        """The entry with this XEP-0359 stanza-id, newest first; None if not kept."""
        for entry in reversed(self.entries):
            if entry.stanza_id == stanza_id:
                return entry
        return None

    def replace(self, entry: HistoryEntry, xml: bytes) -> None:
        """Give ``entry`` new bytes (a retraction's tombstone), still within the bound."""
        self.bytes -= self.charge(entry)
        entry.xml = xml
        entry._join = None
        self.bytes += self.charge(entry)
        self.version += 1
        while self.entries and self.max_bytes is not None and self.bytes > self.max_bytes:
            self.bytes -= self.charge(self.entries.popleft())

    def discard(self, entry: HistoryEntry) -> bool:
        """Forget ``entry`` (this very object): a durable message whose commit never came
        is taken back, nobody having seen it. False when it is no longer kept."""
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i] is entry:
                del self.entries[i]
                self.bytes -= self.charge(entry)
                self.version += 1
                return True
        return False

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
