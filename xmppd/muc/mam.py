"""XEP-0313 message archive queries on a room: parsing the request, shaping the reply.

Pure: the service runs the query (storage, off the event loop) between :func:`parse_query`
and :func:`result_stanzas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from xmppd.muc import forms
from xmppd.muc.history import format_stamp, parse_stamp
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
QUERY = "{%s}query" % MAM


@dataclass(slots=True)
class MamQuery:
    queryid: str | None
    start: datetime | None = None
    end: datetime | None = None
    with_nick: str | None = None
    after: str | None = None
    #: None: page forward from the start; "": the last page; an id: the page before it
    before: str | None = None
    max: int = 50


@dataclass(slots=True)
class ArchivedMessage:
    stanza_id: str
    stamp: datetime
    xml: str


@dataclass(slots=True)
class MamPage:
    messages: list[ArchivedMessage]
    complete: bool
    count: int


def parse_query(query: etree._Element, max_page: int, room_jid: str) -> MamQuery:
    """Read the filter form and RSM set; bad values are ``bad-request`` (XEP-0313 §4.1)."""
    req = MamQuery(queryid=query.get("queryid"), max=min(50, max_page))
    form = forms.find_form(query)
    if form is not None:
        values = forms.form_values(form)
        if forms.first(values, "FORM_TYPE") not in (None, MAM):
            raise StanzaError("bad-request", "unknown FORM_TYPE")
        for name in ("start", "end"):
            raw = forms.first(values, name)
            if raw:
                try:
                    setattr(req, name, parse_stamp(raw))
                except ValueError:
                    raise StanzaError("bad-request", f"'{name}' is not a DateTime") from None
        raw_with = forms.first(values, "with")
        if raw_with:
            prefix = room_jid + "/"
            if not raw_with.startswith(prefix):
                raise StanzaError("bad-request", "'with' must be an occupant JID of this room")
            req.with_nick = raw_with[len(prefix) :]
        unknown = set(values) - {"FORM_TYPE", "start", "end", "with"}
        if unknown:
            raise StanzaError("feature-not-implemented", f"unsupported field {sorted(unknown)[0]}")
    rsm = query.find("{%s}set" % RSM)
    if rsm is not None:
        max_el = rsm.find("{%s}max" % RSM)
        if max_el is not None:
            try:
                req.max = int((max_el.text or "").strip())
            except ValueError:
                raise StanzaError("bad-request", "RSM max must be an integer") from None
            if req.max < 0:
                raise StanzaError("bad-request", "RSM max cannot be negative")
            req.max = min(req.max, max_page)
        after = rsm.find("{%s}after" % RSM)
        if after is not None:
            req.after = (after.text or "").strip() or None
        before = rsm.find("{%s}before" % RSM)
        if before is not None:
            req.before = (before.text or "").strip()
    return req


def query_form() -> etree._Element:
    """The fields a client may filter on (XEP-0313 §5.1)."""
    form = forms.Form("form", MAM)
    form.add("start", "text-single").add("end", "text-single").add("with", "jid-single")
    return form.el


def result_stanzas(
    req: MamQuery, page: MamPage, room_jid: str
) -> tuple[list[etree._Element], etree._Element]:
    """The ``<message/>`` results (no ``to``) and the ``<fin/>`` for the iq result."""
    out: list[etree._Element] = []
    for msg in page.messages:
        wrapper = etree.Element("{%s}message" % ns.CLIENT, nsmap={None: ns.CLIENT})
        wrapper.set("from", room_jid)
        result = etree.SubElement(wrapper, "{%s}result" % MAM, nsmap={None: MAM})
        if req.queryid is not None:
            result.set("queryid", req.queryid)
        result.set("id", msg.stanza_id)
        fwd = etree.SubElement(result, "{%s}forwarded" % FORWARD, nsmap={None: FORWARD})
        delay = etree.SubElement(fwd, "{%s}delay" % ns.DELAY, nsmap={None: ns.DELAY})
        delay.set("stamp", format_stamp(msg.stamp))
        fwd.append(etree.fromstring(msg.xml))
        out.append(wrapper)
    fin = etree.Element("{%s}fin" % MAM, nsmap={None: MAM})
    if page.complete:
        fin.set("complete", "true")
    rsm = etree.SubElement(fin, "{%s}set" % RSM, nsmap={None: RSM})
    if page.messages:
        first = etree.SubElement(rsm, "{%s}first" % RSM)
        first.text = page.messages[0].stanza_id
        etree.SubElement(rsm, "{%s}last" % RSM).text = page.messages[-1].stanza_id
    etree.SubElement(rsm, "{%s}count" % RSM).text = str(page.count)
    return out, fin
