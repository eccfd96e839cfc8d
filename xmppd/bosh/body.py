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


class _StartTag:
    """Parser target that records the root's attributes, then builds the tree."""

    __slots__ = ("attrs", "builder", "depth", "max_depth", "tag")

    def __init__(self, max_depth: int) -> None:
        self.builder = etree.TreeBuilder()
        self.attrs: dict[str, str] | None = None
        self.tag: str | None = None
        self.depth = 0
        self.max_depth = max_depth

    def start(self, tag: str, attrib: dict[str, str], nsmap: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.tag = tag
            self.attrs = dict(attrib)
        elif self.depth > self.max_depth:
            raise StreamError("policy-violation", "XML nested too deeply")
        self.builder.start(tag, attrib, {(k or None): v for k, v in (nsmap or {}).items()})

    def end(self, tag: str) -> None:
        self.depth -= 1
        self.builder.end(tag)

    def data(self, text: str) -> None:
        self.builder.data(text)

    def comment(self, text: str) -> None:
        raise StreamError("restricted-xml", "comments are not allowed")

    def pi(self, target: str, data: str | None = None) -> None:
        raise StreamError("restricted-xml", "processing instructions are not allowed")

    def doctype(self, *args: object) -> None:
        raise StreamError("restricted-xml", "DTDs are not allowed")

    def close(self) -> etree._Element:
        return self.builder.close()


def _rid(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        rid = int(value.strip())
    except ValueError:
        return None
    return rid if 0 < rid <= MAX_RID else None


def _start_tag_only(data: bytes) -> dict[str, str] | None:
    """The ``<body …>`` start tag's attributes when the rest could not be parsed."""
    end = data.find(b">")
    if end < 0:
        return None
    head = data[: end + 1]
    if not head.endswith(b"/>"):
        head = head[:-1] + b"/>"
    try:
        check_restricted_xml(head)
        el = etree.fromstring(head, etree.XMLParser(resolve_entities=False, no_network=True))
    except (StreamError, etree.XMLSyntaxError):
        return None
    return dict(el.attrib) if el.tag == BODY_TAG else None


def parse_body(
    data: bytes, max_payload_size: int = 262_144, max_depth: int = 64
) -> BodyRequest | BadBody:
    """Parse one HTTP request body (``<body/>`` with zero or more payloads)."""
    target = _StartTag(max_depth + 1)
    parser = etree.XMLParser(
        target=target,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        collect_ids=False,
    )
    root: etree._Element | None = None
    reason = ""
    try:
        check_restricted_xml(data)
        parser.feed(data)
        root = parser.close()
    except StreamError as err:
        reason = err.text or err.condition
    except etree.XMLSyntaxError as exc:
        reason = "not well-formed XML: " + str(exc).split(", line")[0][:160]
    attrs = target.attrs
    if attrs is None and reason:
        attrs = _start_tag_only(data)
        if attrs is not None:
            target.tag = BODY_TAG
    sid = attrs.get("sid") if attrs is not None else None
    rid = _rid(attrs.get("rid")) if attrs is not None else None
    if target.tag is not None and target.tag != BODY_TAG:
        return BadBody("the root element must be <body xmlns='%s'/>" % HTTPBIND_NS, wrong_root=True)
    if root is None or attrs is None:
        return BadBody(reason or "empty request", sid, rid)
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
