"""XEP-0114 (Jabber Component Protocol) as two sans-IO machines: the accepting server
side and the connecting component side, on the same parser as c2s.

Why both here: one module owns the handshake and the namespace rewriting, so the server
and ``bridges/component.py`` cannot drift apart, and tests can wire one to the other in
memory without a socket.

The handshake (XEP-0114 §3): the component opens a stream in ``jabber:component:accept``
with ``to`` = its domain; the server answers with a stream header carrying a fresh ``id``;
the component sends ``<handshake>`` = lowercase hex SHA-1(id + secret); the server
answers ``<handshake/>`` or a stream error. Each side's phases change only by its table
(:data:`SERVER_RULES`, :data:`CLIENT_RULES`; what a missing row means is in
:mod:`xmppd.stream.machine`, whose :class:`~xmppd.stream.machine.StreamMachine` both
sides are). Server phases:

=================  ==============================================================
``EXPECT_HEADER``  the component's stream header
``HANDSHAKE``      one ``<handshake>``; anything else is ``not-authorized``
``ACCEPTING``      digest verified: the shell checks the domain is free and calls
                   :meth:`ComponentServerStream.accept` (or ``close("conflict")``)
``ESTABLISHED``    stanzas, ``from`` checked against the component's domain
``CLOSED``         nothing
=================  ==============================================================

Client phases: ``EXPECT_HEADER`` (the server's header, answered with our handshake),
``HANDSHAKE`` (the server's ``<handshake/>``), ``ESTABLISHED`` (stanzas), ``CLOSED``; a
``<stream:error/>`` from the server closes it in any phase.

Inside the server stanzas live in ``jabber:client`` (what the router, MUC and c2s
sessions expect); on a component stream they are in ``jabber:component:accept``.
:func:`convert_namespace` rewrites a tree from one to the other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.stream.machine import Refusal, Rules, StreamEnded, StreamMachine, TableEnum, closing_rows
from xmppd.xml import ns
from xmppd.xml.errors import STREAM_CONDITIONS, StanzaError, StreamError, error_reply
from xmppd.xml.parser import StreamOpen, StreamParser

__all__ = [
    "ComponentClientStream",
    "ComponentServerStream",
    "ComponentSettings",
    "Established",
    "HandshakeVerified",
    "StanzaReceived",
    "StreamEnded",
]

_HANDSHAKE = "{%s}handshake" % ns.COMPONENT
_STREAM_ERROR = "{%s}error" % ns.STREAMS
_STANZA_NAMES = frozenset({"message", "presence", "iq"})
_ACCEPTED_NS = (ns.COMPONENT, ns.CLIENT)
_CLIENT_PREFIX = "{%s}" % ns.CLIENT
_COMPONENT_PREFIX = "{%s}" % ns.COMPONENT
# For bytes handed to ComponentClientStream.stanza_bytes: our own caller's, but still
# no entities or network access.
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret (UTF-8)."""
    return hashlib.sha1((stream_id + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


def convert_namespace(el: etree._Element, sources: tuple[str, ...], dst: str) -> etree._Element:
    """A copy of ``el`` with every element in one of the ``sources`` namespaces moved to
    ``dst`` (``""`` in ``sources`` stands for elements in no namespace).

    lxml cannot change a namespace declaration in place, and a byte-level replace would
    also rewrite text that merely looks like one, so the tree is copied. Each element
    declares its namespace as the default only where it differs from its parent's, which
    keeps the output prefix-free (``<message xmlns="…"><body>…</body></message>``).
    """
    prefixes = tuple("{%s}" % s for s in sources if s)
    bare = "" in sources
    dst_tag = "{%s}" % dst

    def tag_of(node: etree._Element) -> tuple[str, str | None]:
        tag = node.tag
        if tag[:1] != "{":
            return (dst_tag + tag, dst) if bare else (tag, None)
        if tag.startswith(prefixes):
            return dst_tag + tag[tag.index("}") + 1 :], dst
        return tag, tag[1 : tag.index("}")]

    def copy(node: etree._Element, parent: etree._Element, parent_ns: str | None) -> None:
        for child in node:
            if not isinstance(child.tag, str):
                continue  # comments/PIs cannot come from our parser; skip defensively
            tag, namespace = tag_of(child)
            nsmap = {None: namespace} if namespace and namespace != parent_ns else None
            new = etree.SubElement(parent, tag, dict(child.attrib), nsmap=nsmap)
            new.text = child.text
            new.tail = child.tail
            copy(child, new, namespace)

    tag, namespace = tag_of(el)
    root = etree.Element(tag, dict(el.attrib), nsmap={None: namespace} if namespace else None)
    root.text = el.text
    copy(el, root, namespace)
    return root


def to_router(el: etree._Element) -> etree._Element:
    """A stanza read from a component stream, in ``jabber:client`` for the router."""
    if el.tag.startswith(_CLIENT_PREFIX):
        return el
    data = _swap_default_ns(etree.tostring(el), ns.COMPONENT, ns.CLIENT)
    if data is None:
        return convert_namespace(el, (ns.COMPONENT,), ns.CLIENT)
    return etree.fromstring(data, _SAFE_PARSER)


def to_component(el: etree._Element) -> etree._Element:
    """A stanza from inside the server or a bridge, in ``jabber:component:accept``.

    ``jabber:client`` elements and elements built without a namespace (which on the wire
    would inherit the stream's default namespace anyway) are moved.
    """
    return convert_namespace(el, (ns.CLIENT, ""), ns.COMPONENT)


def component_bytes(stanza: etree._Element) -> bytes:
    """Serialise a stanza for a component stream (``jabber:component:accept``).

    The fast path swaps the default namespace declared on the stanza's own start tag,
    which is what a change of the stream's content namespace means: the stanza and the
    children that inherit it move, while anything that declares ``jabber:client`` itself
    (a XEP-0297 forwarded message) keeps it. About 5x cheaper than copying the tree;
    stanzas serialised some other way (no namespace, a prefix) take the copy.
    """
    data = etree.tostring(stanza)
    tag = stanza.tag
    if tag.startswith(_CLIENT_PREFIX):
        swapped = _swap_default_ns(data, ns.CLIENT, ns.COMPONENT)
        if swapped is not None:
            return swapped
    elif (
        tag.startswith(_COMPONENT_PREFIX)
        and b' xmlns="%s"' % ns.COMPONENT.encode() in data[: data.find(b">")]
    ):
        return data
    return etree.tostring(to_component(stanza))


def _swap_default_ns(data: bytes, src: str, dst: str) -> bytes | None:
    """Replace the default namespace declared on the root start tag of serialised XML.

    lxml escapes ``>`` and ``"`` in attribute values, so the first ``>`` ends the start
    tag and ``xmlns="…"`` inside it can only be the declaration itself.
    """
    end = data.find(b">")
    old = b' xmlns="%s"' % src.encode()
    i = data.find(old, 0, end)
    if i < 0 or b":" in data[1:i]:  # absent, or the root itself uses a prefix
        return None
    return data[:i] + b' xmlns="%s"' % dst.encode() + data[i + len(old) :]


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# --------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class HandshakeVerified:
    """The secret matched. The shell checks ``domain`` is not connected already, then
    calls :meth:`ComponentServerStream.accept` or ``close("conflict", …)``."""

    domain: str


@dataclass(frozen=True, slots=True)
class Established:
    """Client side: the server accepted our handshake; stanzas may flow."""


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    """A stanza: on the server side in ``jabber:client`` with a checked ``from``; on the
    client side as parsed (``jabber:component:accept``)."""

    stanza: etree._Element


ComponentEvent = HandshakeVerified | Established | StanzaReceived | StreamEnded


class Phase(TableEnum):
    EXPECT_HEADER = "expect-header"
    HANDSHAKE = "handshake"
    ACCEPTING = "accepting"
    ESTABLISHED = "established"
    CLOSED = "closed"


class Event(TableEnum):
    # -- the peer
    HEADER = "stream header"
    CLOSE = "closing tag"
    HANDSHAKE = "handshake"
    #: ``message``, ``presence`` or ``iq`` (server side: in an accepted namespace).
    STANZA = "stanza"
    #: Client side: the server's ``<stream:error/>``.
    STREAM_ERROR = "stream error"
    OTHER = "element"
    # -- the shell's answer (server side)
    ACCEPT = "accept"
    # -- our outcomes
    ERROR = "our stream error"
    END = "close"


_P, _E = Phase, Event
_PEER = frozenset({_E.HEADER, _E.CLOSE, _E.HANDSHAKE, _E.STANZA, _E.STREAM_ERROR, _E.OTHER})
_UNEXPECTED_HEADER = Refusal("not-well-formed", "unexpected stream header")

#: The accepting side: header, handshake verified, the shell accepts, stanzas.
SERVER_RULES: Rules[Phase, Event] = Rules(
    initial=_P.EXPECT_HEADER,
    closed=_P.CLOSED,
    transitions={
        (_P.EXPECT_HEADER, _E.HEADER): _P.HANDSHAKE,
        (_P.HANDSHAKE, _E.HANDSHAKE): _P.ACCEPTING,  # the digest is checked next
        (_P.ACCEPTING, _E.ACCEPT): _P.ESTABLISHED,
        (_P.ESTABLISHED, _E.STANZA): _P.ESTABLISHED,
        **closing_rows(frozenset(Phase) - {_P.CLOSED}, _P.CLOSED, _E.CLOSE, _E.ERROR, _E.END),
    },
    peer=_PEER,
    answers=frozenset({_E.ACCEPT}),
    refusals={
        _E.HEADER: _UNEXPECTED_HEADER,
        _P.EXPECT_HEADER: Refusal("not-well-formed", "unexpected element"),
        _P.HANDSHAKE: Refusal("not-authorized", "send <handshake/> first"),
        _P.ACCEPTING: Refusal("not-authorized", "wait for the handshake result"),
        _P.ESTABLISHED: Refusal("unsupported-stanza-type", "{name} is not a stanza"),
    },
    peer_close=_E.CLOSE,
    error=_E.ERROR,
    end=_E.END,
    deaf=frozenset({_P.CLOSED}),
)

#: The connecting side: the server's header (we answer with the handshake), its
#: ``<handshake/>``, stanzas; a ``<stream:error/>`` ends it anywhere.
CLIENT_RULES: Rules[Phase, Event] = Rules(
    initial=_P.EXPECT_HEADER,
    closed=_P.CLOSED,
    transitions={
        (_P.EXPECT_HEADER, _E.HEADER): _P.HANDSHAKE,
        (_P.HANDSHAKE, _E.HANDSHAKE): _P.ESTABLISHED,
        (_P.ESTABLISHED, _E.STANZA): _P.ESTABLISHED,
        **closing_rows(
            (_P.EXPECT_HEADER, _P.HANDSHAKE, _P.ESTABLISHED),
            _P.CLOSED,
            _E.CLOSE,
            _E.STREAM_ERROR,
            _E.ERROR,
            _E.END,
        ),
    },
    peer=_PEER,
    answers=frozenset(),
    refusals={
        _E.HEADER: _UNEXPECTED_HEADER,
        _P.EXPECT_HEADER: Refusal("not-well-formed", "unexpected element"),
        _P.HANDSHAKE: Refusal("not-authorized", "expected <handshake/>"),
        _P.ESTABLISHED: Refusal("unsupported-stanza-type", "unexpected <{name}/>"),
    },
    peer_close=_E.CLOSE,
    error=_E.ERROR,
    end=_E.END,
    deaf=frozenset({_P.CLOSED}),
)


@dataclass(slots=True)
class ComponentSettings:
    """What the accepting side knows: the configured component domains and secrets."""

    secrets: Mapping[str, str]
    max_stanza_size: int = 262_144
    max_depth: int = 64


class _Base(StreamMachine[Phase, Event]):
    """What both sides add to the machine: the component parser, ``established``."""

    __slots__ = ()

    def __init__(self, max_stanza_size: int, max_depth: int) -> None:
        super().__init__(StreamParser(max_stanza_size, max_depth))

    @property
    def established(self) -> bool:
        return self.phase is Phase.ESTABLISHED


# ----------------------------------------------------------------- server side
class ComponentServerStream(_Base):
    """The accepting (server) side of one component connection; no I/O, no clock."""

    __slots__ = ("_new_id", "domain", "settings", "stream_id")

    RULES = SERVER_RULES

    def __init__(
        self, settings: ComponentSettings, stream_id_factory: Callable[[], str] | None = None
    ) -> None:
        super().__init__(settings.max_stanza_size, settings.max_depth)
        self.settings = settings
        self._new_id = stream_id_factory or (lambda: secrets.token_hex(12))
        self.stream_id = ""
        #: The component's domain once its header named a configured one.
        self.domain: str | None = None

    def accept(self) -> None:
        """The shell registered the domain: confirm the handshake (``<handshake/>``)."""
        if self._go(Event.ACCEPT):
            self.send(b"<handshake/>")

    def close(self, condition: str | None = None, text: str | None = None) -> StreamEnded:
        """End the stream from our side, with a stream error when ``condition`` is set."""
        return self._end(condition, text)

    def stanza_bytes(self, stanza: etree._Element) -> bytes:
        """Serialise a router stanza (``jabber:client``) for this component stream."""
        return component_bytes(stanza)

    # ------------------------------------------------------------- internals
    def _header_bytes(self) -> bytes:
        if not self.stream_id:
            self.stream_id = self._new_id()
        attrs = f' id="{_attr(self.stream_id)}"'
        if self.domain:
            attrs = f' from="{_attr(self.domain)}"' + attrs
        return (
            b"<?xml version='1.0'?><stream:stream xmlns=\"jabber:component:accept\" "
            b'xmlns:stream="http://etherx.jabber.org/streams"' + attrs.encode() + b">"
        )

    def _on_header(self, header: StreamOpen, events: list[ComponentEvent]) -> None:
        self._go(Event.HEADER)
        self.stream_id = self._new_id()
        if header.default_ns != ns.COMPONENT:
            raise StreamError(
                "invalid-namespace", "the default namespace must be jabber:component:accept"
            )
        to = header.attrs.get("to")
        if not to:
            raise StreamError("host-unknown", "the stream header has no 'to' address")
        try:
            to_jid = JID.parse(to)
        except JIDError:
            raise StreamError("host-unknown", "the 'to' address is not a valid domain") from None
        domain = to_jid.domain
        if not to_jid.is_domain or domain not in self.settings.secrets:
            raise StreamError("host-unknown", f"no component is configured for {to}")
        self.domain = domain
        self._ensure_header()

    def _on_element(self, el: etree._Element, events: list[ComponentEvent]) -> None:
        qname = etree.QName(el)
        if el.tag == _HANDSHAKE:
            event = Event.HANDSHAKE
        elif qname.namespace in _ACCEPTED_NS and qname.localname in _STANZA_NAMES:
            event = Event.STANZA
        else:
            event = Event.OTHER
        self._go(event, el)  # a refusal when the phase has no row
        if event is Event.HANDSHAKE:
            self._handshake(el, events)
        else:
            self._stanza(el, events)

    def _handshake(self, el: etree._Element, events: list[ComponentEvent]) -> None:
        assert self.domain is not None
        given = (el.text or "").strip().lower().encode("utf-8", "replace")
        expected = handshake_digest(self.stream_id, self.settings.secrets[self.domain])
        if not hmac.compare_digest(given, expected.encode("ascii")):
            raise StreamError("not-authorized", "the handshake does not match the secret")
        events.append(HandshakeVerified(self.domain))

    def _stanza(self, el: etree._Element, events: list[ComponentEvent]) -> None:
        stanza = to_router(el)
        err = self._check(stanza)
        if err is not None:
            if stanza.get("type") != "error":
                self.send(self.stanza_bytes(error_reply(stanza, err)))
            return
        events.append(StanzaReceived(stanza))

    def _check(self, stanza: etree._Element) -> StanzaError | None:
        """The component may only speak for its own domain (XEP-0114 §3; Prosody and
        ejabberd validate this too); RFC 6120 §8.2 iq rules as on c2s."""
        assert self.domain is not None
        sender = stanza.get("from")
        if not sender:
            return StanzaError("bad-request", "a component must set 'from' on every stanza")
        try:
            sender_jid = JID.parse(sender)
        except JIDError:
            return StanzaError("jid-malformed", "the 'from' address is not a valid JID")
        if sender_jid.domain != self.domain:
            return StanzaError("forbidden", f"this component may only send from {self.domain}")
        stanza.set("from", str(sender_jid))
        if not stanza.get("to"):
            return StanzaError("bad-request", "a component must address every stanza ('to')")
        if etree.QName(stanza).localname == "iq":
            kind = stanza.get("type")
            if stanza.get("id") is None or kind not in ("get", "set", "result", "error"):
                return StanzaError("bad-request", "an iq needs an id and a valid type")
            if kind in ("get", "set") and len(stanza) != 1:
                return StanzaError("bad-request", "an iq get/set carries exactly one payload")
        return None


# ----------------------------------------------------------------- client side
class ComponentClientStream(_Base):
    """The connecting (component) side; used by ``bridges/component.py``."""

    __slots__ = ("domain", "secret", "stream_id")

    RULES = CLIENT_RULES

    def __init__(
        self, domain: str, secret: str, max_stanza_size: int = 1_048_576, max_depth: int = 64
    ) -> None:
        super().__init__(max_stanza_size, max_depth)
        self.domain = domain
        self.secret = secret
        self.stream_id = ""
        self._header_sent = True  # initiate() is our header

    def initiate(self) -> bytes:
        """The opening stream header (call once, first)."""
        return (
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='"
            + _attr(self.domain).replace("'", "&apos;").encode()
            + b"'>"
        )

    def _on_header(self, header: StreamOpen, events: list[ComponentEvent]) -> None:
        self._go(Event.HEADER)
        if header.default_ns != ns.COMPONENT:
            raise StreamError("invalid-namespace", "expected jabber:component:accept")
        stream_id = header.attrs.get("id")
        if not stream_id:
            raise StreamError("invalid-xml", "the server's stream header has no id")
        self.stream_id = stream_id
        digest = handshake_digest(stream_id, self.secret)
        self.send(b"<handshake>%s</handshake>" % digest.encode("ascii"))

    def _on_element(self, el: etree._Element, events: list[ComponentEvent]) -> None:
        if el.tag == _STREAM_ERROR:
            # The server ends the stream with its error: close our side too.
            self._go(Event.STREAM_ERROR)
            self.send(self._closing_bytes())
            events.append(StreamEnded(error=_parse_stream_error(el), by_peer=True))
            return
        event = Event.HANDSHAKE if el.tag == _HANDSHAKE else Event.STANZA
        self._go(event, el)  # a refusal when the phase has no row
        if event is Event.HANDSHAKE:
            events.append(Established())
        else:
            events.append(StanzaReceived(el))

    @staticmethod
    def stanza_bytes(stanza: etree._Element | bytes) -> bytes:
        """Serialise a stanza for the stream, in ``jabber:component:accept``.

        Elements (or serialised bytes, parsed first so a malformed one fails here and
        not on the server) in ``jabber:client``, ``jabber:component:accept`` or no
        namespace are all accepted. Independent of the stream's state, so callers may
        serialise while disconnected.
        """
        if isinstance(stanza, bytes | bytearray):
            stanza = etree.fromstring(bytes(stanza), _SAFE_PARSER)
        return component_bytes(stanza)

    def close(self) -> bytes:
        """Our closing tag (after which the shell waits briefly for the server's)."""
        if self.closed:
            return b""
        self._end()
        return self.data_to_send()


def _parse_stream_error(el: etree._Element) -> StreamError:
    condition = "undefined-condition"
    text = None
    for child in el:
        q = etree.QName(child)
        if q.namespace != ns.STREAM_ERRORS:
            continue
        if q.localname == "text":
            text = child.text
        elif q.localname in STREAM_CONDITIONS:
            condition = q.localname
    return StreamError(condition, text)
