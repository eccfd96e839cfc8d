"""One ejabberd 23.01 Mnesia record (a parsed term) → the neutral records of its kind.

The shapes, with the table name in the first element as ``dump_to_textfile`` writes it
(``setelement(1, Term, Table)``, src/ejabberd_admin.erl):

- ``{passwd, {User, Server}, Password}``: a binary, or xmpp's ``#scram{storedkey,
  serverkey, salt, hash, iterationcount}`` (base64 binaries; include/scram.hrl of xmpp
  1.6), or the 4-field ``{scram, StoredKey, ServerKey, Salt, IterationCount}`` of older
  versions, always SHA-1 (src/ejabberd_auth_mnesia.erl, get_password/2);
- ``#roster{usj, us, jid, name, subscription, ask, groups, askmessage, xs}``
  (include/mod_roster.hrl); ``subscription = none, ask = in`` is a request only, which
  ejabberd leaves out of the roster it sends (src/mod_roster.erl, line 329);
- ``#offline_msg{us, timestamp, expire, from, to, packet}`` (include/mod_offline.hrl),
  ``packet`` an ``#xmlel{}`` (src/mod_offline_mnesia.erl, store_message/1);
- ``#vcard{us, vcard}`` and ``#private_storage{usns, xml}``, ``#xmlel{}`` values;
- ``#muc_room{name_host, opts}`` and ``#muc_registered{us_host = {{U, S}, Host}, nick}``
  (include/mod_muc.hrl);
- ``#archive_msg{us, id, timestamp, peer, bare_peer, packet, nick, type}``
  (include/mod_mam.hrl; written by src/mod_mam_mnesia.erl, store/8: ``id`` is the
  microsecond time as a decimal binary, ``peer`` the sender's real JID in lower case, the
  direction is not kept).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from xmppd.migrate.ejabberd_rooms import convert_room, room_jid
from xmppd.migrate.erlang_terms import Atom, text
from xmppd.migrate.model import (
    Account,
    AccountMessage,
    Kind,
    OfflineMessage,
    PendingSubscription,
    PrivateXml,
    Problem,
    RegisteredNick,
    RoomMessage,
    RosterItem,
    ScramKeys,
    VCard,
)
from xmppd.migrate.xmlel import element, to_xml

__all__ = ["CONVERTERS", "stamp"]

CLIENT_NS = "jabber:client"
DELAY_NS = "urn:xmpp:delay"
_EPOCH = datetime(1970, 1, 1)
_HASHES = {"sha": "sha1", "sha256": "sha256", "sha512": "sha512"}
_DIGEST_SIZE = {"sha1": 20, "sha256": 32, "sha512": 64}
_SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})
_ASKS = frozenset({"none", "in", "out", "both", "subscribe", "unsubscribe"})

Out = Iterator[Any]


def stamp(ts: Any) -> datetime:
    """An ``erlang:timestamp()`` ``{MegaSecs, Secs, MicroSecs}`` as a naive UTC datetime."""
    if not (isinstance(ts, tuple) and len(ts) == 3 and all(type(x) is int for x in ts)):
        raise ValueError("not an {MegaSecs, Secs, MicroSecs} timestamp")
    mega, secs, micro = ts
    return _EPOCH + timedelta(seconds=mega * 1_000_000 + secs, microseconds=micro)


def _bare(user: Any, server: Any) -> str:
    u = text(user)
    return f"{u}@{text(server)}" if u else text(server)


def _ljid(value: Any) -> str:
    """``{User, Server, Resource}`` → ``user@server/resource`` (parts left out if empty)."""
    user, server, resource = value
    jid = _bare(user, server)
    r = text(resource)
    return f"{jid}/{r}" if r else jid


def _jid_record(value: Any) -> str:
    """xmpp's ``#jid{user, server, resource, luser, lserver, lresource}``."""
    if not (isinstance(value, tuple) and len(value) == 7 and value[0] == "jid"):
        raise ValueError("not a #jid{} record")
    return _ljid(value[1:4])


def _record(term: Any, arity: int) -> tuple[Any, ...]:
    if not (isinstance(term, tuple) and len(term) == arity):
        raise ValueError(f"expected a record of {arity - 1} fields")
    return term


def _b64(value: Any, what: str) -> bytes:
    raw = value if isinstance(value, bytes) else bytes(value)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the SCRAM {what} is not base64") from None


def _scram(value: tuple[Any, ...]) -> ScramKeys:
    if len(value) == 6:  # 23.01: #scram{storedkey, serverkey, salt, hash, iterationcount}
        _, stored, server, salt, hash_atom, count = value
        hash_name = _HASHES.get(str(hash_atom)) if isinstance(hash_atom, Atom) else None
        if hash_name is None:
            raise ValueError(f"unknown SCRAM hash {hash_atom!r}")
    elif len(value) == 5:  # before the hash was kept: SHA-1
        _, stored, server, salt, count = value
        hash_name = "sha1"
    else:
        raise ValueError("a scram record of an unknown shape")
    if type(count) is not int or count <= 0:
        raise ValueError("the SCRAM iteration count is not a positive integer")
    keys = ScramKeys(
        hash_name, _b64(salt, "salt"), count, _b64(stored, "stored key"), _b64(server, "server key")
    )
    size = _DIGEST_SIZE[hash_name]
    if len(keys.stored_key) != size or len(keys.server_key) != size:
        raise ValueError(f"SCRAM keys of the wrong length for {hash_name}")
    return keys


def passwd(term: Any, kind: Kind) -> Out:
    _, (user, server), password = _record(term, 3)
    jid = _bare(user, server)
    if isinstance(password, tuple) and password and password[0] == "scram":
        yield Account(jid, scram=_scram(password))
    elif isinstance(password, bytes | list):
        yield Account(jid, password=text(password))
    else:
        raise ValueError(f"the password of {jid} is neither a binary nor a scram record")


def _subscribe_stanza(owner: str, contact: str, status: str) -> str:
    pres = etree.Element(f"{{{CLIENT_NS}}}presence", nsmap={None: CLIENT_NS})
    pres.set("from", contact)
    pres.set("to", owner)
    pres.set("type", "subscribe")
    if status:
        etree.SubElement(pres, f"{{{CLIENT_NS}}}status").text = status
    return etree.tostring(pres, encoding="unicode")


def roster(term: Any, kind: Kind) -> Out:
    _, _usj, (user, server), contact_ljid, name, sub, ask, groups, askmessage, _xs = _record(
        term, 10
    )
    owner, contact = _bare(user, server), _ljid(contact_ljid)
    if sub not in _SUBSCRIPTIONS or not isinstance(sub, Atom):
        raise ValueError(f"subscription {sub!r} of {contact} in {owner}'s roster")
    if ask not in _ASKS or not isinstance(ask, Atom):
        raise ValueError(f"ask {ask!r} of {contact} in {owner}'s roster")
    pending_in = ask in ("in", "both")
    if kind is Kind.PENDING_SUBSCRIPTIONS:
        if pending_in:
            yield PendingSubscription(
                owner, contact, _subscribe_stanza(owner, contact, text(askmessage))
            )
        return
    if sub == "none" and ask == "in":
        return  # only a request: not a roster item (see the module's docstring)
    yield RosterItem(
        owner=owner,
        contact=contact,
        name=text(name),
        subscription=str(sub),
        ask_out=ask in ("out", "both", "subscribe"),
        pending_in=pending_in,
        groups=tuple(text(g) for g in groups),
    )


def _with_delay(el: Any, when: datetime, by: str) -> None:
    if el.find(f"{{{DELAY_NS}}}delay") is None:
        delay = etree.SubElement(el, f"{{{DELAY_NS}}}delay", nsmap={None: DELAY_NS})
        delay.set("from", by)
        delay.set("stamp", when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def offline_msg(term: Any, kind: Kind) -> Out:
    _, (user, server), ts, expire, from_jid, to_jid, packet = _record(term, 7)
    owner, when = _bare(user, server), stamp(ts)
    if isinstance(expire, tuple) and stamp(expire) < datetime.now(UTC).replace(tzinfo=None):
        yield Problem(kind, "", f"offline message to {owner} of {when:%Y-%m-%d} expired: skipped")
        return
    el = element(packet, CLIENT_NS)
    if el.get("from") is None:
        el.set("from", _jid_record(from_jid))
    if el.get("to") is None:
        el.set("to", _jid_record(to_jid))
    _with_delay(el, when, text(server))
    yield OfflineMessage(owner, etree.tostring(el, encoding="unicode"), when)


def vcard(term: Any, kind: Kind) -> Out:
    _, (user, server), xml = _record(term, 3)
    yield VCard(_bare(user, server), to_xml(xml))


def private_storage(term: Any, kind: Kind) -> Out:
    _, (user, server, namespace), xml = _record(term, 3)
    yield PrivateXml(_bare(user, server), text(namespace), to_xml(xml))


def muc_room(term: Any, kind: Kind) -> Out:
    _, (name, host), opts = _record(term, 3)
    parts = convert_room(room_jid(name, host), opts, "")
    if kind is Kind.ROOMS and parts.room is not None:
        yield parts.room
    if kind is Kind.AFFILIATIONS:
        yield from parts.affiliations
    yield from (p for p in parts.problems if p.kind is kind)


def muc_registered(term: Any, kind: Kind) -> Out:
    _, ((user, server), host), nick = _record(term, 3)
    yield RegisteredNick(text(host), _bare(user, server), text(nick))


def archive_msg(term: Any, kind: Kind) -> Out:
    _, (user, server), msg_id, ts, peer, _bare_peer, packet, nick, msg_type = _record(term, 9)
    if msg_type not in ("chat", "groupchat") or not isinstance(msg_type, Atom):
        raise ValueError(f"archive type {msg_type!r}")
    if (msg_type == "groupchat") != (kind is Kind.ROOM_ARCHIVE):
        return
    archive, when = _bare(user, server), stamp(ts)
    el = element(packet, CLIENT_NS)
    if kind is Kind.ROOM_ARCHIVE:
        # stored as the occupant sent it; the room's copy comes from room@service/nick
        el.set("from", f"{archive}/{text(nick)}")
        el.attrib.pop("to", None)
        sender = _bare(peer[0], peer[1]) if isinstance(peer, tuple) else ""
        stanza = etree.tostring(el, encoding="unicode")
        yield RoomMessage(archive, text(msg_id), when, text(nick), sender, stanza)
        return
    with_jid = _ljid(peer) if isinstance(peer, tuple) else ""
    sender = el.get("from", "")
    outgoing = sender.split("/", 1)[0].lower() == archive.lower()
    stanza = etree.tostring(el, encoding="unicode")
    yield AccountMessage(archive, text(msg_id), when, with_jid, outgoing, stanza)


#: table → (the kinds it feeds, its converter(term, kind)).
CONVERTERS: dict[str, tuple[tuple[Kind, ...], Any]] = {
    "passwd": ((Kind.ACCOUNTS,), passwd),
    "roster": ((Kind.ROSTERS, Kind.PENDING_SUBSCRIPTIONS), roster),
    "offline_msg": ((Kind.OFFLINE,), offline_msg),
    "vcard": ((Kind.VCARDS,), vcard),
    "private_storage": ((Kind.PRIVATE_XML,), private_storage),
    "muc_room": ((Kind.ROOMS, Kind.AFFILIATIONS), muc_room),
    "muc_registered": ((Kind.NICKS,), muc_registered),
    "archive_msg": ((Kind.ROOM_ARCHIVE, Kind.ACCOUNT_ARCHIVE), archive_msg),
}
