"""What the XEP-0227 reader and writer share: namespaces, stamps, SCRAM mechanism names.

The file format itself (XEP-0227 plus xmppd's extension) is described in
docs/xep0227.md; :mod:`xmppd.migrate.xep0227` reads it, :mod:`xmppd.migrate.xep0227_writer`
writes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from xmppd.muc.history import parse_stamp

#: XEP-0227 1.0+ and the namespace of its early drafts (still accepted on reading).
PIE = "urn:xmpp:pie:0"
PIE_OLD = "http://www.xmpp.org/extensions/xep-0227.html#ns"
PIE_NAMESPACES = (PIE, PIE_OLD)
SCRAM = "urn:xmpp:pie:0#scram"
PIE_MAM = "urn:xmpp:pie:0#mam"
XINCLUDE = "http://www.w3.org/2001/XInclude"
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
DELAY = "urn:xmpp:delay"
CLIENT = "jabber:client"
ROSTER = "jabber:iq:roster"
PRIVATE = "jabber:iq:private"
VCARD = "vcard-temp"
#: xmppd's extension: attributes on standard elements (stamps, pending-in, archive
#: direction) and the MUC elements under <host/>.
XP = "urn:xmppd:pie:0"
XP_MUC = "urn:xmppd:pie:muc:0"

#: SCRAM mechanism (RFC 5802/7677 names, as XEP-0227 1.1 writes them) <-> hashlib name.
MECHANISMS = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISM_OF = {hash_name: mech for mech, hash_name in MECHANISMS.items()}


def format_stamp(when: datetime) -> str:
    """XEP-0082 DateTime of a naive-UTC time, to the microsecond (so it reads back equal)."""
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    text = aware.strftime("%Y-%m-%dT%H:%M:%S")
    if aware.microsecond:
        text += f".{aware.microsecond:06d}"
    return text + "Z"


def read_stamp(text: str) -> datetime:
    """Naive UTC from an XEP-0082 DateTime; ValueError if malformed."""
    if len(text) in (20, 27) and text[10] == "T" and text[-1] == "Z" and text[:4].isdigit():
        try:  # what format_stamp writes, read at C speed (millions in an archive)
            when = datetime.fromisoformat(text[:-1])
        except ValueError:
            when = None
        if when is not None and when.tzinfo is None:
            return when
    return parse_stamp(text).replace(tzinfo=None)


def detached(element: etree._Element) -> str:
    """``element`` serialised on its own: without the namespace declarations of the
    file around it or the ``xp:`` attributes. It is taken out of its parent (the reader
    is done with it): lxml then keeps only the declarations the subtree uses, far cheaper
    than a copy for the millions of messages of an archive."""
    parent = element.getparent()
    if parent is not None:
        parent.remove(element)
    element.tail = None
    ours = [(el, n) for el in element.iter() for n in el.attrib if n.startswith(_XP_ATTR)]
    if ours:
        for el, name in ours:
            del el.attrib[name]
        etree.cleanup_namespaces(element)
    return etree.tostring(element, encoding="unicode")


_XP_ATTR = "{%s}" % XP


def flag(value: bool) -> str:
    return "true" if value else "false"


def parse_flag(text: str | None, default: bool) -> bool:
    """XML Schema boolean; ValueError for anything else."""
    if text is None:
        return default
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")
