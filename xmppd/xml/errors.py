"""Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3).

Following h11's split, a :class:`StreamError` or :class:`StanzaError` means *the peer*
broke the rules and carries the RFC condition to answer with; any other exception in
protocol code is our bug and is logged loudly by the shell.
"""

from __future__ import annotations

import copy

from lxml import etree

from xmppd.xml import ns

STREAM_CONDITIONS = frozenset(
    {
        "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
        "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
        "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed",
        "policy-violation", "remote-connection-failed", "reset", "resource-constraint",
        "restricted-xml", "see-other-host", "system-shutdown", "undefined-condition",
        "unsupported-encoding", "unsupported-feature", "unsupported-stanza-type",
        "unsupported-version",
    }
)  # fmt: skip

# RFC 6120 §8.3.3: the error type each condition usually carries.
STANZA_ERROR_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class StreamError(Exception):
    """The peer violated the stream protocol; answer with ``condition`` and close."""

    def __init__(
        self, condition: str, text: str | None = None, app: etree._Element | None = None
    ) -> None:
        assert condition in STREAM_CONDITIONS, condition
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        #: An application-specific condition element (RFC 6120 §4.9.4), if any.
        self.app = app

    def to_bytes(self) -> bytes:
        return stream_error_bytes(self.condition, self.text, self.app)


class StanzaError(Exception):
    """A stanza cannot be handled; answer the sender with an error stanza."""

    def __init__(
        self,
        condition: str,
        text: str | None = None,
        type_: str | None = None,
        app: etree._Element | None = None,
    ) -> None:
        assert condition in STANZA_ERROR_TYPES, condition
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.type = type_ or STANZA_ERROR_TYPES[condition]
        #: An application-specific condition element (RFC 6120 §8.3.4), if any.
        self.app = app


def stream_error_bytes(
    condition: str, text: str | None = None, app: etree._Element | None = None
) -> bytes:
    """``<stream:error>`` ready to write inside an open stream (prefix ``stream`` bound)."""
    el = etree.Element("{%s}error" % ns.STREAMS, nsmap={"stream": ns.STREAMS})
    etree.SubElement(el, "{%s}%s" % (ns.STREAM_ERRORS, condition), nsmap={None: ns.STREAM_ERRORS})
    if text:
        t = etree.SubElement(el, "{%s}text" % ns.STREAM_ERRORS, nsmap={None: ns.STREAM_ERRORS})
        t.set(ns.XML_LANG, "en")
        t.text = text
    if app is not None:
        el.append(app)
    data = etree.tostring(el)
    # The stream prefix is already declared on the stream header.
    return data.replace(b' xmlns:stream="http://etherx.jabber.org/streams"', b"", 1)


def error_element(
    condition: str, type_: str, text: str | None = None, by: str | None = None
) -> etree._Element:
    """The ``<error/>`` child of an error stanza."""
    err = etree.Element("{%s}error" % ns.CLIENT, type=type_, nsmap={None: ns.CLIENT})
    if by:
        err.set("by", by)
    etree.SubElement(err, "{%s}%s" % (ns.STANZA_ERRORS, condition), nsmap={None: ns.STANZA_ERRORS})
    if text:
        t = etree.SubElement(err, "{%s}text" % ns.STANZA_ERRORS, nsmap={None: ns.STANZA_ERRORS})
        t.set(ns.XML_LANG, "en")
        t.text = text
    return err


def error_reply(
    stanza: etree._Element, error: StanzaError, by: str | None = None
) -> etree._Element:
    """An error stanza answering ``stanza``: same kind and id, to/from swapped.

    The original payload is not echoed back: it would let one stanza cause a reply as
    large as itself to be sent elsewhere, and RFC 6120 §8.3.1 only says MAY.
    """
    reply = etree.Element(stanza.tag, nsmap={None: ns.CLIENT})
    reply.set("type", "error")
    for src, dst in (("from", "to"), ("to", "from")):
        value = stanza.get(src)
        if value is not None:
            reply.set(dst, value)
    stanza_id = stanza.get("id")
    if stanza_id is not None:
        reply.set("id", stanza_id)
    err = error_element(error.condition, error.type, error.text, by)
    if error.app is not None:
        err.append(copy.deepcopy(error.app))
    reply.append(err)
    return reply
