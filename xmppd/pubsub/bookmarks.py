"""The pure half of bookmark unification: XEP-0048 storage <-> XEP-0402 items.

XEP-0048 (kept by older clients in XEP-0049 private XML) is one
``<storage xmlns='storage:bookmarks'>`` with a ``<conference jid name autojoin>`` (and
``<nick/>``, ``<password/>``) per room, and ``<url/>`` bookmarks. XEP-0402 keeps one
PEP item per room in ``urn:xmpp:bookmarks:1``: the item id is the room's JID and the
payload ``<conference xmlns='urn:xmpp:bookmarks:1' name autojoin>`` with ``<nick/>``,
``<password/>`` and ``<extensions/>`` (§3). XEP-0402 §5.3 ("Compatibility") describes
the casting done here: each item becomes a ``<conference/>`` whose ``jid`` is the item id,
and a replaced storage list becomes per-item updates and retractions. No I/O here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lxml import etree

from xmppd.jid import JID, JIDError

STORAGE_NS = "storage:bookmarks"
NODE = "urn:xmpp:bookmarks:1"
#: XEP-0402 §5.3: the account's feature when private XML and PEP bookmarks are one.
COMPAT_FEATURE = NODE + "#compat"
#: XEP-0402 §4 / XEP-0223: the node configuration a server-created bookmarks node gets.
NODE_OPTIONS = {"access_model": "whitelist", "persist_items": True}

_S = "{%s}" % STORAGE_NS
_B = "{%s}" % NODE
_TRUE = ("true", "1")


@dataclass(frozen=True, slots=True)
class Conference:
    """One bookmarked room, as both forms carry it."""

    jid: str
    name: str | None = None
    autojoin: bool = False
    nick: str | None = None
    password: str | None = None


def room_jid(text: str | None) -> str | None:
    """The bookmark's room as a normalised bare JID; None when missing or invalid (XEP-0048
    §3.2 makes ``jid`` REQUIRED, so such a bookmark is not converted)."""
    if not text:
        return None
    try:
        jid = JID.parse(text)
    except JIDError:
        return None
    if jid.local is None or jid.resource is not None:
        return None
    return str(jid)


def _text(parent: etree._Element, tag: str) -> str | None:
    el = parent.find(tag)
    return el.text if el is not None and el.text else None


def from_storage(storage: etree._Element) -> tuple[list[Conference], int]:
    """The conferences of a XEP-0048 ``<storage/>`` (first of each room wins) and how
    many were skipped for a missing or invalid ``jid``."""
    found: dict[str, Conference] = {}
    skipped = 0
    for el in storage.findall(_S + "conference"):
        jid = room_jid(el.get("jid"))
        if jid is None:
            skipped += 1
            continue
        found.setdefault(
            jid,
            Conference(
                jid,
                el.get("name"),
                el.get("autojoin", "").strip().lower() in _TRUE,
                _text(el, _S + "nick"),
                _text(el, _S + "password"),
            ),
        )
    return list(found.values()), skipped


def from_item(item_id: str, payload: etree._Element) -> Conference | None:
    """The conference of a XEP-0402 item; None for a bad id or a foreign payload."""
    jid = room_jid(item_id)
    if jid is None or payload.tag != _B + "conference":
        return None
    return Conference(
        jid,
        payload.get("name"),
        payload.get("autojoin", "").strip().lower() in _TRUE,
        _text(payload, _B + "nick"),
        _text(payload, _B + "password"),
    )


def item_payload(conf: Conference, previous: etree._Element | None = None) -> etree._Element:
    """The XEP-0402 ``<conference/>`` for ``conf``, keeping the ``<extensions/>`` of the
    item it replaces (§3.3: clients' extra data must survive an edit)."""
    el = etree.Element(_B + "conference", nsmap={None: NODE})
    if conf.name is not None:
        el.set("name", conf.name)
    if conf.autojoin:
        el.set("autojoin", "true")
    if conf.nick is not None:
        etree.SubElement(el, _B + "nick").text = conf.nick
    if conf.password is not None:
        etree.SubElement(el, _B + "password").text = conf.password
    if previous is not None:
        extensions = previous.find(_B + "extensions")
        if extensions is not None:
            el.append(copy.deepcopy(extensions))
    return el


def to_storage(
    conferences: list[Conference], previous: etree._Element | None = None
) -> etree._Element:
    """A XEP-0048 ``<storage/>`` of ``conferences``, keeping the ``<url/>`` bookmarks of the
    storage it replaces (XEP-0402 has none, so they only live here)."""
    storage = etree.Element(_S + "storage", nsmap={None: STORAGE_NS})
    for conf in conferences:
        el = etree.SubElement(storage, _S + "conference", jid=conf.jid)
        el.set("autojoin", "true" if conf.autojoin else "false")
        if conf.name is not None:
            el.set("name", conf.name)
        if conf.nick is not None:
            etree.SubElement(el, _S + "nick").text = conf.nick
        if conf.password is not None:
            etree.SubElement(el, _S + "password").text = conf.password
    if previous is not None:
        for url in previous.findall(_S + "url"):
            storage.append(copy.deepcopy(url))
    return storage


@dataclass(frozen=True, slots=True)
class Changes:
    """What turns the PEP items into a new storage list (XEP-0402 §5.3.2)."""

    publish: list[Conference]
    retract: list[str]


def diff(current: dict[str, Conference], wanted: list[Conference]) -> Changes:
    """Items to publish (new or changed) and to retract (gone); unchanged items are left
    alone ("SHOULD NOT send notifications for unchanged items")."""
    keep = {c.jid for c in wanted}
    return Changes(
        [c for c in wanted if current.get(c.jid) != c],
        [jid for jid in current if jid not in keep],
    )
