"""What the XEP-0227 reader and writer share: namespaces, stamps, SCRAM mechanism names.

The file format itself (XEP-0227 plus xmppd's extension) is described in
docs/xep0227.md; :mod:`xmppd.migrate.xep0227` reads it, :mod:`xmppd.migrate.xep0227_writer`
writes it.
"""

from __future__ import annotations

import copy
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
    return parse_stamp(text).replace(tzinfo=None)


def detached(element: etree._Element) -> str:
    """``element`` serialised on its own: without the namespace declarations of the
    file around it (lxml would repeat them on a sub-element) or the ``xp:`` attributes."""
    own = copy.deepcopy(element)
    own.tail = None
    for el in own.iter():
        for name in [n for n in el.attrib if n.startswith("{%s}" % XP)]:
            del el.attrib[name]
    etree.cleanup_namespaces(own)
    return etree.tostring(own, encoding="unicode")


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
