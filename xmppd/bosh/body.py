"""The BOSH ``<body/>`` wrapper (XEP-0124 §4, XEP-0206): parse requests, render responses.

Sans-IO: bytes in, a :class:`BodyRequest` (or :class:`BadBody`) out; attributes in,
bytes out. Parsing is as strict as the c2s stream parser: no DTDs, comments,
processing instructions or entity references (XEP-0124 §4 forbids them too), bounded
depth and payload size. When the XML is broken the start tag may still have been read;
its ``sid``/``rid`` let the session that sent it be terminated with ``bad-request``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from xmppd.stream.framing import HTTPBIND_NS
from xmppd.xml.errors import StreamError
from xmppd.xml.parser import check_restricted_xml

XBOSH_NS = "urn:xmpp:xbosh"
STREAM_NS = "http://etherx.jabber.org/streams"
BODY_TAG = "{%s}body" % HTTPBIND_NS
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
XMPP_VERSION = "{%s}version" % XBOSH_NS
XMPP_RESTART = "{%s}restart" % XBOSH_NS
#: XEP-0124 §13.1: rids never exceed 2^53 - 1.
MAX_RID = 9_007_199_254_740_991


@dataclass(slots=True)
class BodyRequest:
    """One client ``<body/>``: the attributes the connection manager acts on, and payloads."""

    rid: int
    sid: str | None
    attrs: dict[str, str]
    payloads: list[etree._Element] = field(default_factory=list)

    @property
    def terminate(self) -> bool:
        return self.attrs.get("type") == "terminate"

    @property
    def restart(self) -> bool:
        return self.attrs.get(XMPP_RESTART, "").lower() in ("true", "1")

    @property
    def empty(self) -> bool:
        return not self.payloads

    def int_attr(self, name: str) -> int | None:
        """A non-negative integer attribute, ``None`` when absent; ``ValueError`` if bad."""
        value = self.attrs.get(name)
        if value is None:
            return None
        number = int(value.strip())
        if number < 0:
            raise ValueError(name)
        return number


@dataclass(frozen=True, slots=True)
class BadBody:
    """The request is unusable (``bad-request``); ``sid``/``rid`` when the start tag was read."""

    reason: str
    sid: str | None = None
    rid: int | None = None
    #: The root element is not ``<body xmlns='…httpbind'/>`` (wrong namespace or name).
    wrong_root: bool = False


#: One parser for every request: safe settings, no DTD or network, comments and PIs kept
#: (they never get past :func:`check_restricted_xml` anyway).
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    collect_ids=False,
    remove_blank_text=False,
)


def _too_deep(root: etree._Element, max_depth: int) -> bool:
    stack = [(root, 1)]
    while stack:
        el, depth = stack.pop()
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in el)
    return False


def _rid(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        rid = int(value.strip())
    except ValueError:
        return None
    return rid if 0 < rid <= MAX_RID else None


def _start_tag(data: bytes) -> etree._Element | None:
    """The document's first start tag alone, when the whole could not be parsed."""
    end = data.find(b">")
    if end < 0:
        return None
    head = data[: end + 1]
    if not head.endswith(b"/>"):
        head = head[:-1] + b"/>"
    try:
        check_restricted_xml(head)
        return etree.fromstring(head, _PARSER)
    except (StreamError, etree.XMLSyntaxError):
        return None


def parse_body(
    data: bytes, max_payload_size: int = 262_144, max_depth: int = 64
) -> BodyRequest | BadBody:
    """Parse one HTTP request body (``<body/>`` with zero or more payloads)."""
    root: etree._Element | None = None
    reason = ""
    try:
        check_restricted_xml(data)
        root = etree.fromstring(data, _PARSER)
    except StreamError as err:
        reason = err.text or err.condition
    except etree.XMLSyntaxError as exc:
        reason = "not well-formed XML: " + str(exc).split(", line")[0][:160]
    if root is None:
        start = _start_tag(data)
        if start is None or start.tag != BODY_TAG:
            return BadBody(reason or "empty request", wrong_root=start is not None)
        return BadBody(reason or "empty request", start.get("sid"), _rid(start.get("rid")))
    if root.tag != BODY_TAG:
        return BadBody("the root element must be <body xmlns='%s'/>" % HTTPBIND_NS, wrong_root=True)
    attrs = dict(root.attrib)
    sid = attrs.get("sid")
    rid = _rid(attrs.get("rid"))
    if _too_deep(root, max_depth + 1):
        return BadBody("XML nested too deeply", sid, rid)
    if rid is None:
        return BadBody("a 'rid' attribute (1 .. 2^53-1) is required", sid, None)
    if (root.text or "").strip():
        return BadBody("the <body/> wrapper must not contain character data", sid, rid)
    payloads = [child for child in root if isinstance(child.tag, str)]
    if len(data) > max_payload_size:
        for child in payloads:
            if len(etree.tostring(child)) > max_payload_size:
                return BadBody(f"payload larger than {max_payload_size} bytes", sid, rid)
    for child in payloads:
        root.remove(child)
        child.tail = None
    return BodyRequest(rid, sid, attrs, payloads)


def _attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;").replace(">", "&gt;")
    )


_PREFIXED = {XML_LANG: "xml:lang", XMPP_VERSION: "xmpp:version", XMPP_RESTART: "xmpp:restart"}


def render_body(
    attrs: Iterable[tuple[str, str]], payloads: Iterable[bytes] = (), *, xbosh: bool = False
) -> bytes:
    """``<body xmlns='…httpbind' …>payloads</body>``; payloads are complete elements.

    Every payload frame declares its own namespaces (see :mod:`xmppd.stream.framing`),
    so the wrapper needs only its own; ``xbosh`` adds ``xmlns:xmpp`` and ``xmlns:stream``
    for the session creation response (XEP-0206 §3).
    """
    parts = [f"<body xmlns='{HTTPBIND_NS}'"]
    if xbosh:
        parts.append(f" xmlns:xmpp='{XBOSH_NS}' xmlns:stream='{STREAM_NS}'")
    for name, value in attrs:
        parts.append(f" {_PREFIXED.get(name, name)}='{_attr(value)}'")
    head = "".join(parts).encode()
    body = b"".join(payloads)
    if not body:
        return head + b"/>"
    return head + b">" + body + b"</body>"


def terminate_body(condition: str | None = None, payloads: Iterable[bytes] = ()) -> bytes:
    """A terminal binding response (XEP-0124 §17.2), with payloads (e.g. a stream error)."""
    attrs = [("type", "terminate")]
    if condition:
        attrs.append(("condition", condition))
    return render_body(attrs, payloads)
