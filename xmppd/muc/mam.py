"""XEP-0313 message archive queries on a room: the shared query code of :mod:`xmppd.mam.query`
with the room's own ``with`` rule.

Pure: the service runs the query (storage, off the event loop) between :func:`parse_query`
and :func:`result_stanzas`.
"""

from __future__ import annotations

from lxml import etree

from xmppd.mam.query import (
    FORWARD,
    MAM,
    QUERY,
    RSM,
    ArchivedMessage,
    MamPage,
    MamQuery,
    query_form,
    result_stanzas,
)
from xmppd.mam.query import parse_query as parse_mam_query
from xmppd.xml.errors import StanzaError

__all__ = [
    "FORWARD",
    "MAM",
    "QUERY",
    "RSM",
    "ArchivedMessage",
    "MamPage",
    "MamQuery",
    "parse_query",
    "query_form",
    "result_stanzas",
]


def parse_query(query: etree._Element, max_page: int, room_jid: str) -> MamQuery:
    """A room query (XEP-0313 §4.1): ``with`` must be an occupant JID of this room
    (§4.1.1.1: a MUC archive matches the publisher); it becomes the nick."""
    prefix = room_jid + "/"

    def occupant_nick(raw: str) -> str:
        if not raw.startswith(prefix) or len(raw) == len(prefix):
            raise StanzaError("bad-request", "'with' must be an occupant JID of this room")
        return raw[len(prefix) :]

    return parse_mam_query(query, max_page, occupant_nick)
