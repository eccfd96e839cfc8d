"""XEP-0352 client state indication: what an inactive client's session holds back.

XEP-0352 only carries the state (``<active/>`` / ``<inactive/>`` nonzas after bind, §4);
what the server does with it is its own choice (§3.2). Ours, for an IM client on a phone:

- **Sent at once** (urgent): iq stanzas (someone waits for the answer); messages with a
  body, except groupchat ones that do not mention the user's nick in that room; errors;
  subscription requests and answers (RFC 6121 §3); MUC self-presence (status 110, the
  answer to the client's own join); message carbons, MAM results and encrypted payloads
  (they stand for a message with a body); MUC invitations; messages from offline storage
  (stamped ``<delay from='domain'/>``: the page's delivery waits for them); PEP events
  from the account itself (bookmarks, device lists the client relies on); anything not
  listed below.
- **Held** until the client is active again: presence changes of others (only the latest
  per sender full JID is kept, so a burst of 200 changes is at most one per contact),
  chat states (XEP-0085), receipts and markers without a body (XEP-0184, XEP-0333), PEP
  events of contacts, groupchat chatter and subject changes.

**Order.** RFC 6120 §10.1 and XEP-0352 §5.1 want stanzas in order. An urgent stanza
therefore flushes everything held before it (it never overtakes what came first), and a
newer presence from the same sender replaces the older one *at the newer position*: the
older one is obsolete, and a stanza from that sender held in between keeps its place
before the presence that followed it. On ``<active/>``, or when the held queue reaches
``[csi] max_held`` stanzas or ``max_held_bytes``, everything held goes out in that order.

Sans-IO: :class:`HeldQueue` sees serialised stanza bytes (what ``Session.send`` gets) and
parses one only while the client is inactive, so an active session pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from xmppd.stream.c2s_events import C2SSettings, ClientStateChanged
from xmppd.stream.framing import with_client_ns
from xmppd.xml import ns
from xmppd.xml.errors import StreamError

_C = "{%s}" % ns.CLIENT
_MUC_USER = "http://jabber.org/protocol/muc#user"
_PUBSUB_EVENT = "{http://jabber.org/protocol/pubsub#event}event"
#: Bodiless message payloads that stand for a message the user wants now.
_URGENT_CHILDREN = frozenset(
    {
        "{urn:xmpp:carbons:2}received",
        "{urn:xmpp:carbons:2}sent",
        "{urn:xmpp:mam:2}result",
        "{urn:xmpp:mam:2}fin",
        "{eu.siacs.conversations.axolotl}encrypted",
        "{urn:xmpp:omemo:2}encrypted",
        "{jabber:x:conference}x",
    }
)
#: Bodiless message payloads that can wait (chat states, receipts, markers, PEP events).
_HOLDABLE_CHILDREN = frozenset(
    {
        "{http://jabber.org/protocol/chatstates}active",
        "{http://jabber.org/protocol/chatstates}composing",
        "{http://jabber.org/protocol/chatstates}paused",
        "{http://jabber.org/protocol/chatstates}inactive",
        "{http://jabber.org/protocol/chatstates}gone",
        "{urn:xmpp:receipts}received",
        "{urn:xmpp:chat-markers:0}received",
        "{urn:xmpp:chat-markers:0}displayed",
        "{urn:xmpp:chat-markers:0}acknowledged",
        "{urn:xmpp:hints}no-store",
        "{urn:xmpp:hints}no-permanent-store",
        "{urn:xmpp:sid:0}stanza-id",
        "{urn:xmpp:sid:0}origin-id",
        "{urn:xmpp:occupant-id:0}occupant-id",
        "{urn:xmpp:delay}delay",
        "{http://jabber.org/protocol/address}addresses",
        _PUBSUB_EVENT,
        "{%s}thread" % ns.CLIENT,
        "{%s}subject" % ns.CLIENT,
    }
)
_DELAY = "{urn:xmpp:delay}delay"
_SUBSCRIPTION = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)

#: ``nick_of(room_bare)``: this session's nick in that local room, or None.
NickLookup = Callable[[str], "str | None"]


def client_state(settings: C2SSettings, el: etree._Element) -> ClientStateChanged:
    """The stream's handler for ``<active/>``/``<inactive/>`` (XEP-0352 §4.2).

    Without ``[csi] enabled`` the feature was not offered, so the element is as unknown
    as any other nonza: ``unsupported-stanza-type`` (RFC 6120 §4.9.3.22).
    """
    if not settings.csi_enabled:
        raise StreamError("unsupported-stanza-type", "client state indication is not offered")
    return ClientStateChanged(active=el.tag == "{%s}active" % ns.CSI)


def _mentions(body: str, nick: str) -> bool:
    """The nick in the body as a word of its own, case-insensitively ("@ann:", "ann,")."""
    text, word = body.casefold(), nick.casefold()
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        start = text.find(word, start + 1)
    return False


def presence_key(el: etree._Element, own_bare: str) -> str | None:
    """The key a held presence replaces its sender's older one under; None: urgent."""
    kind = el.get("type")
    if kind in _SUBSCRIPTION or kind == "error" or kind == "probe":
        return None
    x = el.find("{%s}x" % _MUC_USER)
    if x is not None and any(s.get("code") == "110" for s in x.iterfind("{%s}status" % _MUC_USER)):
        return None  # the room's answer to this client's own join or nick change
    return el.get("from") or own_bare


def message_is_urgent(el: etree._Element, own_bare: str, nick_of: NickLookup) -> bool:
    """Whether an inactive client should get this message now (see the module rules)."""
    kind = el.get("type") or "normal"
    if kind == "error":
        return True
    body = el.find(_C + "body")
    if kind == "groupchat":
        if body is None or not body.text:
            return False
        sender = el.get("from") or ""
        room, _, speaker = sender.partition("/")
        nick = nick_of(room)
        return bool(nick) and speaker != nick and _mentions(body.text, nick)  # type: ignore[arg-type]
    if body is not None:
        return True
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag in _URGENT_CHILDREN:
            return True
        if tag == _DELAY and child.get("from") == own_bare.partition("@")[2]:
            return True  # offline delivery (XEP-0160): its pages wait for this stanza
        if tag == "{%s}x" % _MUC_USER:
            if child.find("{%s}invite" % _MUC_USER) is not None:
                return True
            continue
        if tag == _PUBSUB_EVENT:
            if (el.get("from") or own_bare) == own_bare:
                return True  # the account's own PEP (bookmarks, devices)
            continue
        if tag not in _HOLDABLE_CHILDREN:
            return True  # something we do not know: do not delay it
    return False


def hold_key(data: bytes, own_bare: str, nick_of: NickLookup) -> str | None:
    """Why ``data`` may wait: ``""`` to hold it, a presence key to hold it replacing its
    sender's older presence, ``None`` to send it now."""
    head = data[:10]
    if head.startswith(b"<iq"):
        return None
    try:
        el = etree.fromstring(with_client_ns(data), _PARSER)
    except etree.XMLSyntaxError:
        return None  # not ours to judge
    if el.tag == _C + "presence":
        return presence_key(el, own_bare)
    if el.tag == _C + "message":
        return None if message_is_urgent(el, own_bare, nick_of) else ""
    return None


class HeldQueue:
    """The stanzas held for one inactive session, in order, bounded.

    ``offer(data)`` returns None when it kept ``data``, else the list to send now: what
    was held (in order) and then ``data``. ``drain()`` empties it (``<active/>``).
    """

    __slots__ = ("_held", "_next", "held_bytes", "max_bytes", "max_held", "nick_of", "own")

    def __init__(
        self, own_bare: str, nick_of: NickLookup, *, max_held: int, max_bytes: int
    ) -> None:
        self.own = own_bare
        self.nick_of = nick_of
        self.max_held = max_held
        self.max_bytes = max_bytes
        #: key -> bytes, in the order they go out; a held presence is keyed by its sender.
        self._held: dict[Any, bytes] = {}
        self._next = 0
        self.held_bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def offer(self, data: bytes) -> list[bytes] | None:
        key = hold_key(data, self.own, self.nick_of)
        if key is None:
            out = self.drain()
            out.append(data)
            return out
        held = self._held
        if key:
            old = held.pop(("presence", key), None)
            if old is not None:
                self.held_bytes -= len(old)
            slot: Any = ("presence", key)
        else:
            self._next += 1
            slot = self._next
        held[slot] = data
        self.held_bytes += len(data)
        if len(held) > self.max_held or self.held_bytes > self.max_bytes:
            return self.drain()
        return None

    def drain(self) -> list[bytes]:
        out = list(self._held.values())
        self._held.clear()
        self.held_bytes = 0
        return out
