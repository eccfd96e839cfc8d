"""Serialise once, address many: byte templates with the ``to`` spliced in per recipient.

A broadcast stanza is serialised without ``to``; the bytes are cut right after the tag
name (``<message``), and each recipient gets ``head + b' to="…"' + tail``: two slices and
a join, no tree copy, no second serialisation. A :class:`Recipient` carries its ready
``to`` attribute bytes and the parts the service needs to find its session.
"""

from __future__ import annotations

from functools import lru_cache
from xml.sax.saxutils import quoteattr

from lxml import etree

from xmppd.jid import FULL_JID_CACHE, JID


class Recipient:
    """A real full JID the room sends to; immutable and cached per address."""

    __slots__ = ("bare", "domain", "full", "resource", "to_attr")

    def __init__(self, jid: JID) -> None:
        self.full = str(jid)
        self.bare = str(jid.bare)
        self.domain = jid.domain
        self.resource = jid.resource or ""
        self.to_attr = b" to=" + quoteattr(self.full).encode("utf-8")

    def __repr__(self) -> str:
        return f"<Recipient {self.full}>"


@lru_cache(maxsize=FULL_JID_CACHE)
def recipient(jid: JID) -> Recipient:
    return Recipient(jid)


class Template:
    """A stanza serialised once without ``to``; :meth:`to` addresses one copy."""

    __slots__ = ("head", "tail")

    def __init__(self, el: etree._Element) -> None:
        data = etree.tostring(el)
        cut = data.index(b" ") if b" " in data[: data.index(b">")] else data.index(b">")
        self.head = data[:cut]
        self.tail = data[cut:]

    def to(self, rcpt: Recipient) -> bytes:
        return b"".join((self.head, rcpt.to_attr, self.tail))


def render(el: etree._Element, rcpt: Recipient) -> bytes:
    """One-off stanza (a reply, an error) for one recipient."""
    return Template(el).to(rcpt)
