"""XEP-0313 archive queries, for any archive: parsing the request, shaping the reply.

Pure: a service runs the query against its store between :func:`parse_query` and
:func:`result_stanzas`. The room archive (:mod:`xmppd.muc.mam`) and each account's archive
(:mod:`xmppd.services.account_mam`) differ only in what the ``with`` field may name, which
the caller checks with its own ``check_with``.
"""

from __future__ import annotations

from collections.abc import Callable
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
XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"
EXTENDED = MAM + "#extended"
FLIP_PAGE = "{%s}flip-page" % MAM
#: The fields every archive understands (§4.1); anything else is ``feature-not-implemented``.
FIELDS = frozenset({"FORM_TYPE", "start", "end", "with"})
#: The fields of an archive advertising ``urn:xmpp:mam:2#extended`` (§4.1.3).
EXTENDED_FIELDS = FIELDS | {"before-id", "after-id", "ids"}


@dataclass(slots=True)
class MamQuery:
    queryid: str | None
    start: datetime | None = None
    end: datetime | None = None
    #: the ``with`` filter as the archive's ``check_with`` made it (a nick, a JID)
    with_: str | None = None
    after: str | None = None
    #: None: page forward from the start; "": the last page; an id: the page before it
    before: str | None = None
    max: int = 50
    #: ``#extended`` (§4.1.3): only after / before these archive ids, only these ids
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] = ()
    #: §4.3.4: send the page's results newest first (the page itself is the same)
    flip: bool = False


@dataclass(slots=True)
class ArchivedMessage:
    stanza_id: str
    stamp: datetime
    xml: str


@dataclass(slots=True)
class MamPage:
    messages: list[ArchivedMessage]
    complete: bool
    #: RSM ``<count/>``; None leaves it out (optional, §4.3.2, and costly on big archives)
    count: int | None = None


def parse_query(
    query: etree._Element,
    max_page: int,
    check_with: Callable[[str], str],
    extended: bool = False,
) -> MamQuery:
    """Read the filter form and RSM set (§4.1, §4.3).

    Malformed dates and RSM values are ``bad-request``; a field this archive does not
    know is ``feature-not-implemented`` (§4.1.5 "Retrieving form fields"). A ``max``
    above ``max_page`` is clamped to it: the server may limit a page (§4.3.1). With
    ``extended``, ``before-id``/``after-id``/``ids`` (at most ``max_page`` ids,
    ``policy-violation`` beyond) and ``<flip-page/>`` too.
    """
    req = MamQuery(queryid=query.get("queryid"), max=min(50, max_page))
    form = forms.find_form(query)
    if form is not None:
        values = forms.form_values(form)
        if forms.first(values, "FORM_TYPE") not in (None, MAM):
            raise StanzaError("bad-request", "unknown FORM_TYPE")
        unknown = set(values) - (EXTENDED_FIELDS if extended else FIELDS)
        if unknown:
            raise StanzaError("feature-not-implemented", f"unsupported field {sorted(unknown)[0]}")
        for name in ("start", "end"):
            raw = forms.first(values, name)
            if raw:
                try:
                    setattr(req, name, parse_stamp(raw))
                except ValueError:
                    raise StanzaError("bad-request", f"'{name}' is not a DateTime") from None
        raw_with = forms.first(values, "with")
        if raw_with:
            req.with_ = check_with(raw_with.strip())
        req.after_id = (forms.first(values, "after-id") or "").strip() or None
        req.before_id = (forms.first(values, "before-id") or "").strip() or None
        req.ids = tuple(dict.fromkeys(v.strip() for v in values.get("ids", ()) if v.strip()))
        if len(req.ids) > max_page:
            raise StanzaError("policy-violation", f"at most {max_page} ids per query")
    req.flip = extended and query.find(FLIP_PAGE) is not None
    rsm = query.find("{%s}set" % RSM)
    if rsm is not None:
        _read_rsm(rsm, req, max_page)
    return req


#: Bytes a result adds around its archived stanza (result, forwarded, delay, addresses).
RESULT_OVERHEAD = 512


def fit_page(page: MamPage, budget: int, backwards: bool) -> MamPage:
    """``page`` cut to the results whose bytes fit ``budget`` (always at least one).

    A page of large messages must not overflow the client's send queue (which would cut
    the client off): the server may limit a page (§4.3.1), and the cut page is then not
    ``complete``. Going forward the oldest results are kept (the client asks ``after``
    the last one next); going backwards the newest (it asks ``before`` the first one).
    """
    order = list(reversed(page.messages)) if backwards else list(page.messages)
    kept: list[ArchivedMessage] = []
    used = 0
    for msg in order:
        used += len(msg.xml.encode()) + RESULT_OVERHEAD
        if kept and used > budget:
            break
        kept.append(msg)
    if len(kept) == len(order):
        return page
    if backwards:
        kept.reverse()
    return MamPage(kept, complete=False, count=page.count)


def _read_rsm(rsm: etree._Element, req: MamQuery, max_page: int) -> None:
    """XEP-0059 ``max``, ``after`` and ``before`` (empty ``before``: the last page)."""
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


def query_form(extended: bool = False) -> etree._Element:
    """The fields a client may filter on (§4.1.5); ``ids`` is an open list (XEP-0122)."""
    form = forms.Form("form", MAM)
    form.add("with", "jid-single").add("start", "text-single").add("end", "text-single")
    if extended:
        form.add("before-id", "text-single").add("after-id", "text-single")
        form.add("ids", "list-multi")
        validate = etree.SubElement(
            form.el[-1], "{%s}validate" % XDATA_VALIDATE, nsmap={None: XDATA_VALIDATE}
        )
        validate.set("datatype", "xs:string")
        etree.SubElement(validate, "{%s}open" % XDATA_VALIDATE)
    return form.el


def result_stanzas(
    req: MamQuery, page: MamPage, archive_jid: str
) -> tuple[list[etree._Element], etree._Element]:
    """The ``<message/>`` results (from the archive, no ``to``) and the ``<fin/>`` for the
    iq result (§4.2, §4.3: ``complete``, RSM ``first``/``last``). A flipped page is sent
    newest first; its ``first``/``last`` still name its oldest and newest result, as the
    page is the same one (§4.3.4)."""
    out: list[etree._Element] = []
    for msg in reversed(page.messages) if req.flip else page.messages:
        wrapper = etree.Element("{%s}message" % ns.CLIENT, nsmap={None: ns.CLIENT})
        wrapper.set("from", archive_jid)
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
    if page.count is not None:
        etree.SubElement(rsm, "{%s}count" % RSM).text = str(page.count)
    return out, fin
