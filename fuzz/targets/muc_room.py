"""MUC room commands on the pure room core (xmppd/muc/room.py and its feature modules).

A room with a site admin, an owner and visitors gets a fuzzed sequence of stanzas: joins
with history requests of absurd values (maxstanzas, maxchars, seconds, since), nick
changes, groupchat and private messages, subject changes, admin items (role and
affiliation changes, lists), owner configuration forms with fuzzed fields and values,
destruction, registration, iqs to occupants, and raw fuzzed stanzas.

Invariants:
- the room answers everything inside ``Out`` and never raises;
- everything it sends is XML that re-parses; an error it sends names a defined stanza
  error condition with the right shape (RFC 6120 §8.3);
- it sends only to real full JIDs, and a joiner gets at most ``maxstanzas`` history
  messages when it asked for a valid number;
- occupants' nicks stay unique (by their PRECIS key).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import quoteattr

import atheris
from lxml import etree

from xmppd.jid import JID
from xmppd.muc.config import MucConfig
from xmppd.muc.room import Out, Room, RoomContext, RoomSettings
from xmppd.muc.roomconfig import CONFIG_FIELDS
from xmppd.xml import ns
from xmppd.xml.errors import STANZA_ERROR_TYPES
from xmppd.xml.parser import StreamParser

from _support import reparse

SERVICE = "conference.example.org"
ROOM = f"sax@{SERVICE}"
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
MUC = "http://jabber.org/protocol/muc"
USERS = ["boss@example.org/a", "alice@example.org/a", "bob@example.org/b", "bob@example.org/c"]
NICKS = ["Alice", "bob", "Bob", "\uff22\uff2f\uff22", "a b", " x", "", "é" * 50]
HISTORY_ATTRS = ["maxstanzas", "maxchars", "seconds", "since"]
HISTORY_VALUES = [
    "0", "1", "-1", "3", "1000000", "99999999999999999999999", "1e9", "NaN", " 2",
    "2024-05-06T07:08:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "garbage", "",
]  # fmt: skip
ROLES = ["moderator", "participant", "visitor", "none", "owner", "x"]
AFFILIATIONS = ["owner", "admin", "member", "outcast", "none", "x"]
CONFIG_VARS = ["FORM_TYPE", *(cf.var for cf in CONFIG_FIELDS)]
CONFIG_VALUES = ["1", "0", "true", "anyone", "moderators", "", "-5", "100000000000", "x" * 2000]
HEADER = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"


def text(fdp: atheris.FuzzedDataProvider, choices: list[str]) -> str:
    if fdp.ConsumeIntInRange(0, 3):
        return fdp.PickValueInList(choices)
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))


def q(value: str) -> str:
    return quoteattr(value)


def stanza_xml(fdp: atheris.FuzzedDataProvider, occupants: list[str]) -> tuple[str, str | None]:
    """(stanza XML, nick it is addressed to or None for the room)."""
    op = fdp.ConsumeIntInRange(0, 13)
    nick = text(fdp, NICKS + occupants)
    if op <= 2:
        hist = "".join(
            f" {a}={q(text(fdp, HISTORY_VALUES))}" for a in HISTORY_ATTRS if fdp.ConsumeBool()
        )
        pw = f"<password>{fdp.PickValueInList(['', 'secret'])}</password>" * fdp.ConsumeBool()
        return f"<presence><x xmlns='{MUC}'><history{hist}/>{pw}</x></presence>", nick
    if op == 3:
        return "<presence type='unavailable'/>", nick
    if op == 4:
        return "<presence><show>away</show><status>s</status></presence>", nick
    if op == 5:
        return "<message type='groupchat' id='m'><body>hi &amp; &lt;</body></message>", None
    if op == 6:
        return "<message type='groupchat'><subject>topic</subject></message>", None
    if op == 7:
        return "<message type='chat'><body>pm</body></message>", nick
    if op in (8, 9):
        key = "role" if fdp.ConsumeBool() else "affiliation"
        value = text(fdp, ROLES if key == "role" else AFFILIATIONS)
        who = f"nick={q(nick)}" if fdp.ConsumeBool() else f"jid={q(text(fdp, USERS))}"
        kind = "set" if op == 8 else "get"
        reason = "<reason>r</reason>" * fdp.ConsumeBool()
        item = f"<item {who} {key}={q(value)}>{reason}</item>"
        return f"<iq type='{kind}' id='q'><query xmlns='{MUC}#admin'>{item}</query></iq>", None
    if op == 10:
        fields = (
            "".join(
                f"<field var={q(fdp.PickValueInList(CONFIG_VARS))}>"
                + "".join(
                    f"<value>{text(fdp, CONFIG_VALUES)}</value>"
                    for _ in range(fdp.ConsumeIntInRange(0, 2))
                )
                + "</field>"
                for _ in range(fdp.ConsumeIntInRange(0, 4))
            )
            .replace("&", "&amp;")
            .replace("<value><", "<value>&lt;")
        )
        form_type = f"{MUC}#roomconfig" if fdp.ConsumeIntInRange(0, 3) else "x"
        form = (
            f"<x xmlns='jabber:x:data' type='{fdp.PickValueInList(['submit', 'cancel', 'form'])}'>"
            f"<field var='FORM_TYPE'><value>{form_type}</value></field>{fields}</x>"
        )
        kind = fdp.PickValueInList(["set", "get"])
        return f"<iq type='{kind}' id='o'><query xmlns='{MUC}#owner'>{form}</query></iq>", None
    if op == 11:
        return f"<iq type='set' id='d'><query xmlns='{MUC}#owner'><destroy/></query></iq>", None
    if op == 12:
        return "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>", nick
    raw = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    return raw, nick if fdp.ConsumeBool() else None


def parse_stanza(xml: str) -> etree._Element | None:
    parser = StreamParser()
    try:
        events = parser.feed(HEADER + xml.encode())
    except Exception:
        return None
    finally:
        parser.dispose()
    found = [e for e in events if isinstance(e, etree._Element)]
    return found[0] if len(found) == 1 else None


def check_out(out: Out) -> None:
    for n, (rcpt, data) in enumerate(out.sends):
        jid = JID.parse(rcpt.full)
        assert jid.resource is not None, rcpt.full
        el = etree.fromstring(data)
        if n < 2:  # the fan-out repeats the same bytes; two are enough to re-read
            reparse(el)
        if el.get("type") == "error":
            err = el.find("{jabber:client}error")
            assert err is not None, data
            assert err.get("type") in ("auth", "cancel", "continue", "modify", "wait"), data
            conditions = [
                etree.QName(c).localname
                for c in err
                if etree.QName(c).namespace == ns.STANZA_ERRORS
                and etree.QName(c).localname != "text"
            ]
            assert len(conditions) == 1 and conditions[0] in STANZA_ERROR_TYPES, data


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ids = itertools.count(1)
    ctx = RoomContext(
        config=MucConfig(),
        service=SERVICE,
        site_admins=frozenset({"boss@example.org"}),
        new_id=lambda: f"id{next(ids)}",
    )
    room = Room(JID("sax", SERVICE, None), RoomSettings(), ctx)
    now = T0
    for _ in range(fdp.ConsumeIntInRange(1, 14)):
        sender = JID.parse(fdp.PickValueInList(USERS))
        xml, nick = stanza_xml(fdp, [o.nick for o in room.occupants.values()])
        stanza = parse_stanza(xml)
        if stanza is None:
            continue
        stanza.set("from", str(sender))
        if nick is not None:
            try:
                to = str(JID.make("sax", SERVICE, nick))
            except ValueError:
                continue  # the router refuses an invalid JID before the room sees it
        else:
            to = ROOM
        stanza.set("to", to)
        now += timedelta(seconds=fdp.ConsumeIntInRange(0, 100000))
        tag = etree.QName(stanza).localname
        if tag == "presence":
            out = room.handle_presence(stanza, sender, nick, now)
        elif tag == "message":
            out = room.handle_message(stanza, sender, nick, now)
        elif tag == "iq":
            out = room.handle_iq(stanza, sender, nick, now)
        else:
            continue
        check_out(out)
        maxstanzas = stanza.find(f"{{{MUC}}}x/{{{MUC}}}history")
        if tag == "presence" and maxstanzas is not None:
            limit = (maxstanzas.get("maxstanzas") or "").strip()
            if limit.isdigit() and limit.isascii():
                delayed = [1 for _, d in out.sends if b"urn:xmpp:delay" in d and b"<body" in d]
                assert len(delayed) <= int(limit), (limit, len(delayed))
        keys = (
            [o.key for o in room.occupants.values()]
            if hasattr(next(iter(room.occupants.values()), None), "key")
            else list(room.occupants)
        )
        assert len(keys) == len(set(keys))
        if out.gone:
            return
