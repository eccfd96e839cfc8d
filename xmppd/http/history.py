"""``GET /chat/history``: a public room's recent messages as JSON, from the MUC's memory ring.

No database query per request: each room's ring is turned into JSON-ready items once
per change (keyed by its newest stanza-id and length) and then only sliced. The forum's
PHP embeds the result in its pages and the widget renders it before it has connected;
the live stream continues from the newest ``stanza_id`` (XEP-0359), which the widget
uses to drop duplicates.

An item is ``stanza_id``, ``nick``, ``text``, ``timestamp`` and, when the message carries
an XEP-0066 ``<x xmlns='jabber:x:oob'><url>`` (a shared file), ``oob``: that URL.

Query parameters: ``room`` (localpart, default the first public room), ``since`` (a
stanza-id: only newer messages; if it is no longer in the ring, everything kept is
returned with ``"gap": true``) and ``limit`` (newest N, default 50, at most the ring size).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from xmppd.muc.history import HistoryEntry, format_stamp
from xmppd.muc.moderation import is_retraction
from xmppd.xml import ns

_BODY = "{%s}body" % ns.CLIENT
#: XEP-0066: the URL of a file shared with the message (an upload's GET URL).
_OOB_URL = "{jabber:x:oob}x/{jabber:x:oob}url"
DEFAULT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class HistoryAnswer:
    status: int
    body: bytes
    etag: str | None = None


def _item(entry: HistoryEntry) -> dict[str, Any] | None:
    try:
        el = etree.fromstring(entry.xml)
    except etree.XMLSyntaxError:
        return None
    body = el.find(_BODY)
    if body is None or body.text is None or is_retraction(el):
        return None  # tombstones have no body; retractions are no chat lines
    item: dict[str, Any] = {
        "stanza_id": entry.stanza_id,
        "nick": entry.nick,
        "text": body.text,
        "timestamp": format_stamp(entry.stamp),
    }
    oob = el.findtext(_OOB_URL)
    if oob and oob.strip():
        item["oob"] = oob.strip()
    return item


class HistoryFeed:
    """Serves the public rooms of one MUC service."""

    def __init__(self, muc: Any, public_rooms: list[str], max_limit: int) -> None:
        self.muc = muc
        self.public = [r.lower() for r in public_rooms]
        self.max_limit = max(1, max_limit)
        self._cache: dict[str, tuple[tuple[str, int], list[dict[str, Any]]]] = {}
        #: room -> stanza-id -> (the entry's bytes, its item): a retraction replaces the
        #: bytes with a tombstone, so the item is made again (and is None)
        self._memo: dict[str, dict[str, tuple[bytes, dict[str, Any] | None]]] = {}

    def _items(self, name: str, room: Any) -> list[dict[str, Any]]:
        entries = room.history.entries
        key = (entries[-1].stanza_id if entries else "", room.history.version)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        # Only entries not seen before are parsed: a new message costs one parse.
        memo = self._memo.setdefault(name, {})
        items = []
        for entry in entries:
            known = memo.get(entry.stanza_id)
            if known is not None and known[0] is entry.xml:
                item = known[1]
            else:
                item = _item(entry)
                memo[entry.stanza_id] = (entry.xml, item)
            if item is not None:
                items.append(item)
        if len(memo) > 2 * len(entries) + 16:
            live = {e.stanza_id for e in entries}
            for stanza_id in [k for k in memo if k not in live]:
                del memo[stanza_id]
        self._cache[name] = (key, items)
        return items

    def answer(self, query: str) -> HistoryAnswer:
        params = parse_qs(query, keep_blank_values=True)
        name = (params.get("room", [""])[0] or (self.public[0] if self.public else "")).lower()
        rooms = getattr(self.muc, "rooms", {}) if self.muc is not None else {}
        room = rooms.get(name) if name in self.public else None
        # Listed or not, a room that asks a password (or membership) of those who enter
        # is not read without it: the same rule as joining and MAM.
        if room is None or not room.open_to_anyone():
            return HistoryAnswer(404, _json({"error": "no public history for this room"}))
        try:
            limit = int(params.get("limit", [str(DEFAULT_LIMIT)])[0])
        except ValueError:
            return HistoryAnswer(400, _json({"error": "limit must be an integer"}))
        if limit < 0:
            return HistoryAnswer(400, _json({"error": "limit must not be negative"}))
        limit = min(limit, self.max_limit)
        since = params.get("since", [""])[0]
        items = self._items(name, room)
        gap = False
        if since:
            for index in range(len(items) - 1, -1, -1):
                if items[index]["stanza_id"] == since:
                    items = items[index + 1 :]
                    break
            else:
                gap = True
        items = items[-limit:] if limit else []
        doc: dict[str, Any] = {"room": room.jid_str, "messages": items}
        if since:
            doc["gap"] = gap
        body = _json(doc)
        etag = '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()
        return HistoryAnswer(200, body, etag)


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
