"""One element of an XEP-0227 file turned into records: a user's roster, vCard, private
storage, offline message, pending subscription, SCRAM credentials, archived message, and
xmppd's room elements (docs/xep0227.md).

Each function takes the finished element and the names around it (host, user, room) and
returns records, raising :class:`Bad` with a one-line reason for what it cannot read;
the walk (:mod:`xmppd.migrate.xep0227`) turns that into a :class:`Problem`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, datetime

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.migrate import pie
from xmppd.migrate.model import (
    AccountMessage,
    Affiliation,
    OfflineMessage,
    PendingSubscription,
    PrivateXml,
    RegisteredNick,
    RoomMessage,
    RosterItem,
    ScramKeys,
    VCard,
)

SUBSCRIPTIONS = ("none", "to", "from", "both")
AFFILIATIONS = ("owner", "admin", "member", "outcast")


class Bad(ValueError):
    """The element cannot be read; the message says why (one line, no secret)."""


def bare(text: str | None, what: str) -> str:
    """``text`` as a bare JID string (normalised), or :class:`Bad`."""
    if not text:
        raise Bad(f"{what} is missing")
    try:
        return str(JID.parse(text).bare)
    except JIDError as exc:
        raise Bad(f"{what} {text!r} is not a JID: {exc}") from None


def _b64(el: etree._Element, name: str) -> bytes:
    child = next((c for c in el if etree.QName(c).localname == name), None)
    if child is None or not (child.text or "").strip():
        raise Bad(f"<{name}/> is missing")
    try:
        return base64.b64decode((child.text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Bad(f"<{name}/> is not base64") from None


def scram_keys(el: etree._Element) -> ScramKeys:
    """XEP-0227 1.1 ``<scram-credentials/>`` (children in the element's namespace)."""
    mechanism = (el.get("mechanism") or "").removesuffix("-PLUS")
    hash_name = pie.MECHANISMS.get(mechanism)
    if hash_name is None:
        raise Bad(f"unknown SCRAM mechanism {el.get('mechanism')!r}")
    count = next((c.text for c in el if etree.QName(c).localname == "iter-count"), None)
    try:
        iterations = int((count or "").strip())
    except ValueError:
        raise Bad("<iter-count/> is not a number") from None
    if iterations < 1:
        raise Bad("<iter-count/> must be positive")
    return ScramKeys(
        hash_name, _b64(el, "salt"), iterations, _b64(el, "stored-key"), _b64(el, "server-key")
    )


def old_scram(text: str) -> ScramKeys:
    """ejabberd's older ``password='scram:…'``: [hash,]stored,server,salt,count (base64)."""
    parts = text.split(",")
    hash_name = "sha1"
    if len(parts) == 5 and parts[0] in ("sha256", "sha512"):
        hash_name = parts.pop(0)
    if len(parts) != 4:
        raise Bad("password='scram:…' is not stored,server,salt,count")
    try:
        stored, server, salt = (base64.b64decode(p, validate=True) for p in parts[:3])
        iterations = int(parts[3])
    except (binascii.Error, ValueError):
        raise Bad("password='scram:…' is not base64 keys and a count") from None
    return ScramKeys(hash_name, salt, iterations, stored, server)


def roster(el: etree._Element, owner: str) -> Iterator[RosterItem | Bad]:
    """RFC 6121 roster items; a bad item is one :class:`Bad`, the others still count."""
    for item in el:
        if item.tag != "{%s}item" % pie.ROSTER:
            yield Bad(f"unknown roster child <{etree.QName(item).localname}/>")
            continue
        try:
            contact = bare(item.get("jid"), "roster item jid")
            subscription = item.get("subscription", "none")
            if subscription not in SUBSCRIPTIONS:
                raise Bad(f"roster item {contact}: subscription {subscription!r}")
            ask = item.get("ask")
            if ask not in (None, "subscribe"):
                raise Bad(f"roster item {contact}: ask {ask!r}")
            groups = tuple(g.text or "" for g in item if g.tag == "{%s}group" % pie.ROSTER)
            yield RosterItem(
                owner=owner,
                contact=contact,
                name=item.get("name", ""),
                subscription=subscription,
                ask_out=ask == "subscribe",
                pending_in=pie.parse_flag(item.get("{%s}pending-in" % pie.XP), False),
                approved=pie.parse_flag(item.get("approved"), False),
                groups=groups,
            )
        except Bad as exc:
            yield exc
        except ValueError as exc:
            yield Bad(f"roster item {item.get('jid')!r}: {exc}")


def pending(el: etree._Element, owner: str) -> PendingSubscription:
    if el.get("type") != "subscribe":
        raise Bad(f"a <presence/> of type {el.get('type')!r} is not a subscription request")
    return PendingSubscription(owner, bare(el.get("from"), "presence from"), pie.detached(el))


def delay_stamp(el: etree._Element, host: str) -> datetime | None:
    """The XEP-0203 stamp among ``el``'s <delay/>s (``host``'s first), or None."""
    delays = [d for d in el if d.tag == "{%s}delay" % pie.DELAY and d.get("stamp")]
    delays.sort(key=lambda d: d.get("from") != host)  # ours first
    for delay in delays:
        try:
            return pie.read_stamp(delay.get("stamp", ""))
        except ValueError:
            raise Bad(f"<delay/> stamp {delay.get('stamp')!r} is not a DateTime") from None
    return None


def offline(el: etree._Element, owner: str, host: str) -> OfflineMessage:
    """A stored message; its time from xmppd's ``xp:stamp``, else its <delay/>, else now."""
    if el.tag != "{%s}message" % pie.CLIENT:
        raise Bad(f"<offline-messages/> holds a <{etree.QName(el).localname}/>")
    stamp = el.get("{%s}stamp" % pie.XP)
    if stamp is None:
        when = delay_stamp(el, host)
    else:
        try:
            when = pie.read_stamp(stamp)
        except ValueError:
            raise Bad(f"xp:stamp {stamp!r} is not a DateTime") from None
    if when is None:
        when = datetime.now(UTC).replace(tzinfo=None)
    return OfflineMessage(owner, pie.detached(el), when)


def vcard(el: etree._Element, owner: str) -> VCard:
    return VCard(owner, pie.detached(el))


def private(el: etree._Element, owner: str) -> Iterator[PrivateXml]:
    """One record per namespace (XEP-0049 keys by it), its elements in document order."""
    by_ns: dict[str, list[str]] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        namespace = etree.QName(child).namespace
        if namespace is None:
            raise Bad(f"private storage <{child.tag}/> has no namespace")
        by_ns.setdefault(namespace, []).append(pie.detached(child))
    for namespace, parts in by_ns.items():
        yield PrivateXml(owner, namespace, "".join(parts))


def _forwarded(el: etree._Element, host: str) -> tuple[str, datetime, etree._Element]:
    """(id, stamp, message) of an XEP-0313 ``<result/>`` as XEP-0227 1.1 archives it."""
    if el.tag != "{%s}result" % pie.MAM:
        raise Bad(f"an <archive/> holds a <{etree.QName(el).localname}/>")
    stanza_id = el.get("id")
    if not stanza_id:
        raise Bad("an archived <result/> has no id")
    fwd = el.find("{%s}forwarded" % pie.FORWARD)
    message = None if fwd is None else fwd.find("{%s}message" % pie.CLIENT)
    if fwd is None or message is None:
        raise Bad(f"archived result {stanza_id!r} has no <forwarded><message/>")
    when = delay_stamp(fwd, host)
    if when is None:
        raise Bad(f"archived result {stanza_id!r} has no <delay/> stamp")
    return stanza_id, when, message


def account_message(el: etree._Element, owner: str, host: str) -> AccountMessage:
    """An archived one-to-one message; direction and partner from xmppd's attributes,
    else from the message's from/to as seen by ``owner``."""
    stanza_id, when, message = _forwarded(el, host)
    with_jid = el.get("{%s}with" % pie.XP)
    outgoing_text = el.get("{%s}outgoing" % pie.XP)
    if outgoing_text is not None:
        try:
            outgoing = pie.parse_flag(outgoing_text, False)
        except ValueError as exc:
            raise Bad(f"archived result {stanza_id!r}: {exc}") from None
    else:
        sender = message.get("from")
        outgoing = sender is None or bare(sender, "message from") == owner
    if with_jid is None:
        with_jid = message.get("to" if outgoing else "from") or ""
        if not with_jid:
            raise Bad(f"archived result {stanza_id!r}: whom the message was with is unknown")
    return AccountMessage(owner, stanza_id, when, with_jid, outgoing, pie.detached(message))


def room_message(el: etree._Element, room: str, host: str) -> RoomMessage:
    stanza_id, when, message = _forwarded(el, host)
    nick = el.get("{%s}nick" % pie.XP_MUC)
    if nick is None:  # a MUC message comes from room@service/nick
        nick = (message.get("from") or "").partition("/")[2]
    sender = el.get("{%s}sender" % pie.XP_MUC, "")
    return RoomMessage(room, stanza_id, when, nick, sender, pie.detached(message))


def affiliation(el: etree._Element, room: str) -> Affiliation:
    value = el.get("affiliation", "")
    if value not in AFFILIATIONS:
        raise Bad(f"room {room}: affiliation {value!r}")
    jid = el.get("jid") or ""
    try:
        parsed = JID.parse(jid)  # a bare JID or a whole domain (XEP-0045 §9.1)
    except JIDError as exc:
        raise Bad(f"room {room}: affiliation jid {jid!r}: {exc}") from None
    return Affiliation(room, str(parsed.bare), value, el.text or "")


def nick(el: etree._Element, scope: str) -> RegisteredNick:
    text = el.text or ""
    if not text:
        raise Bad(f"{scope}: an empty registered nick")
    return RegisteredNick(scope, bare(el.get("jid"), f"{scope}: nick jid"), text)
