"""An account's archiving preferences (XEP-0441, the ``<prefs/>`` of ``urn:xmpp:mam:2``
that earlier versions of XEP-0313 defined): ``default`` plus ``always``/``never``.

``default`` is ``always`` (archive every conversation), ``never`` (none) or ``roster``
(only with contacts in the account's roster). A JID in ``always`` is archived and one in
``never`` is not, whatever the default; the lists hold bare JIDs (the XEP's examples
do; a full JID is reduced to its bare JID, since a conversation partner's resources
change). A JID in both lists is not archived: the user asked for it to be left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.mam.query import MAM
from xmppd.xml.errors import StanzaError

PREFS = "{%s}prefs" % MAM
DEFAULTS = ("always", "never", "roster")
#: Longest JID kept in a list (a bare JID: 255 + "@" + 127 characters).
JID_MAX = 383


@dataclass(frozen=True, slots=True)
class Prefs:
    default: str = "always"
    always: frozenset[str] = field(default_factory=frozenset)
    never: frozenset[str] = field(default_factory=frozenset)

    def decide(self, other: str) -> bool | None:
        """Archive a conversation with bare JID ``other``? None: ask the roster."""
        if other in self.never:
            return False
        if other in self.always:
            return True
        if self.default == "roster":
            return None
        return self.default == "always"


def _jids(parent: etree._Element | None, limit: int) -> frozenset[str]:
    if parent is None:
        return frozenset()
    found: list[str] = []
    for item in parent.iterfind("{%s}jid" % MAM):
        raw = (item.text or "").strip()
        try:
            jid = str(JID.parse(raw).bare)
        except JIDError:
            raise StanzaError("jid-malformed", f"not a JID: {raw[:100]!r}") from None
        if len(jid) > JID_MAX:
            raise StanzaError("not-acceptable", f"a JID may be {JID_MAX} characters")
        found.append(jid)
    jids = frozenset(found)
    if len(jids) > limit:
        raise StanzaError("policy-violation", f"at most {limit} JIDs per list")
    return jids


def parse_prefs(el: etree._Element, limit: int) -> Prefs:
    """The ``<prefs/>`` of a set (XEP-0441); ``bad-request`` for an unknown default."""
    default = el.get("default")
    if default not in DEFAULTS:
        raise StanzaError("bad-request", "'default' must be always, never or roster")
    return Prefs(
        default,
        _jids(el.find("{%s}always" % MAM), limit),
        _jids(el.find("{%s}never" % MAM), limit),
    )


def prefs_element(prefs: Prefs) -> etree._Element:
    """``<prefs default=…><always>…</always><never>…</never></prefs>`` (both lists always
    present, as XEP-0441's replies show)."""
    el = etree.Element(PREFS, nsmap={None: MAM})
    el.set("default", prefs.default)
    for name, jids in (("always", prefs.always), ("never", prefs.never)):
        parent = etree.SubElement(el, "{%s}%s" % (MAM, name))
        for jid in sorted(jids):
            etree.SubElement(parent, "{%s}jid" % MAM).text = jid
    return el
