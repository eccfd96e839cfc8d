"""Incremental XMPP stream parser on lxml's pull parser.

Feed it bytes as they arrive; it returns stream-open, stanza and stream-close events.
Safe by construction (RFC 6120 §11.1 "restricted XML"):

- a byte scanner in front of libxml2 refuses DTDs, comments, processing instructions
  and every entity reference except the five predefined ones and character references
  (libxml2 with entity resolution off does not raise on an undefined entity: it silently
  loses the rest of the document, so we must not let one reach it);
- stanzas larger than ``max_stanza_size`` bytes or nested deeper than ``max_depth`` are a
  ``policy-violation``;
- each finished stanza is detached from the stream root (slixmpp's trick: the root would
  otherwise keep every stanza of the session in memory).

Violations raise :class:`~xmppd.xml.errors.StreamError`; the parser is then unusable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from xmppd.xml import ns
from xmppd.xml.errors import StreamError


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The ``<stream:stream>`` header: its attributes and default namespace."""

    attrs: dict[str, str]
    default_ns: str | None


@dataclass(frozen=True, slots=True)
class StreamClose:
    """``</stream:stream>`` arrived."""


ParserEvent = StreamOpen | StreamClose | etree._Element

_MARKUP = re.compile(rb"<[!?]|&|<$")
_PREDEFINED_ENTITY = re.compile(rb"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_ENTITY_PREFIX = re.compile(rb"&(?:[a-z]{0,4}|#[0-9]{0,7}|#x[0-9a-fA-F]{0,6})$")
_XML_DECL = re.compile(rb"<\?xml\s[^?<>]{0,200}\?>")
_CDATA_OPEN = b"<![CDATA["


class _RestrictedXmlScanner:
    """Finds restricted markup in a byte stream, across chunk boundaries.

    Only the bytes that can start markup are inspected (``<!``, ``<?`` and ``&``), with
    regex searches rather than a per-byte loop, so the cost is a few microseconds per
    stanza. CDATA sections are legal XMPP and their content is skipped.
    """

    __slots__ = ("_carry", "_in_cdata", "_seen_markup")

    def __init__(self) -> None:
        self._carry = b""
        self._in_cdata = False
        self._seen_markup = False

    def scan(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        self._carry = b""
        i = 0
        if not self._seen_markup:
            stripped = buf.lstrip()
            if stripped:
                i = len(buf) - len(stripped)
                if stripped.startswith(b"<?"):
                    m = _XML_DECL.match(buf, i)
                    if m is None:
                        if len(stripped) < 210 and b">" not in stripped:
                            self._carry = buf
                            return
                        raise StreamError(
                            "restricted-xml", "processing instructions are not allowed"
                        )
                    i = m.end()
                self._seen_markup = True
            else:
                return
        while True:
            if self._in_cdata:
                end = buf.find(b"]]>", i)
                if end < 0:
                    self._carry = buf[-2:]
                    return
                self._in_cdata = False
                i = end + 3
                continue
            m = _MARKUP.search(buf, i)
            if m is None:
                return
            k = m.start()
            lead = buf[k : k + 2]
            if lead == b"<":  # a lone '<' at the very end: decide with the next chunk
                self._carry = b"<"
                return
            if lead[:1] == b"&":
                ok = _PREDEFINED_ENTITY.match(buf, k)
                if ok is not None:
                    i = ok.end()
                    continue
                if _ENTITY_PREFIX.match(buf, k) and len(buf) - k < 12:
                    self._carry = buf[k:]
                    return
                raise StreamError("restricted-xml", "entity references are not allowed")
            if lead == b"<!":
                tail = buf[k : k + len(_CDATA_OPEN)]
                if tail == _CDATA_OPEN:
                    self._in_cdata = True
                    i = k + len(_CDATA_OPEN)
                    continue
                if len(tail) < len(_CDATA_OPEN) and _CDATA_OPEN.startswith(tail):
                    self._carry = buf[k:]
                    return
                raise StreamError("restricted-xml", "comments and DTDs are not allowed")
            raise StreamError("restricted-xml", "processing instructions are not allowed")


class StreamParser:
    """One XML stream (a new instance after every stream restart)."""

    __slots__ = (
        "_depth",
        "_parser",
        "_root",
        "_scanner",
        "_stanza_bytes",
        "closed",
        "default_ns",
        "max_depth",
        "max_stanza_size",
    )

    def __init__(self, max_stanza_size: int = 262_144, max_depth: int = 64) -> None:
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._parser = etree.XMLPullParser(
            events=("start", "end", "comment", "pi"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            encoding="utf-8",
            collect_ids=False,
        )
        self._scanner = _RestrictedXmlScanner()
        self._depth = 0
        self._root: etree._Element | None = None
        self._stanza_bytes = 0
        self.default_ns: str | None = None
        self.closed = False

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse ``data``; return the events it completes. Raises ``StreamError``."""
        if self.closed:
            return []
        self._scanner.scan(data)
        if not (self._depth == 1 and data.isspace()):
            self._stanza_bytes += len(data)
        try:
            self._parser.feed(data)
            return self._collect()
        except etree.XMLSyntaxError as exc:
            msg = str(exc)
            if "encoding" in msg.lower() or "invalid char" in msg.lower():
                raise StreamError("not-well-formed", "invalid UTF-8 or character") from None
            raise StreamError("not-well-formed", msg.split(", line")[0][:200]) from None

    def _collect(self) -> list[ParserEvent]:
        out: list[ParserEvent] = []
        for event, el in self._parser.read_events():
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    out.append(self._open(el))
                elif self._depth > self.max_depth:
                    raise StreamError("policy-violation", "XML nested too deeply")
            elif event == "end":
                self._depth -= 1
                if self._depth == 1:
                    if self._stanza_bytes > self.max_stanza_size:
                        raise StreamError(
                            "policy-violation", f"stanza larger than {self.max_stanza_size} bytes"
                        )
                    out.append(self._detach(el))
                    self._stanza_bytes = 0
                elif self._depth == 0:
                    self.closed = True
                    out.append(StreamClose())
                    break
            else:
                raise StreamError(
                    "restricted-xml", "comments and processing instructions are not allowed"
                )
        if self._stanza_bytes > self.max_stanza_size:
            raise StreamError(
                "policy-violation", f"stanza larger than {self.max_stanza_size} bytes"
            )
        return out

    def _open(self, root: etree._Element) -> StreamOpen:
        if root.getroottree().docinfo.doctype:
            raise StreamError("restricted-xml", "DTDs are not allowed")
        if root.tag != "{%s}stream" % ns.STREAMS:
            if etree.QName(root).localname == "stream":
                raise StreamError(
                    "invalid-namespace", "the stream element is in the wrong namespace"
                )
            raise StreamError("not-well-formed", "expected <stream:stream>")
        self._root = root
        self.default_ns = root.nsmap.get(None)
        return StreamOpen(dict(root.attrib), self.default_ns)

    def _detach(self, el: etree._Element) -> etree._Element:
        """Move the stanza into a fresh element carrying only the default namespace.

        A stanza left in the stream tree would serialise with ``ns0:`` prefixes or a
        stray ``xmlns:stream``; moving the children (not copying) keeps this cheap.
        """
        namespace = etree.QName(el).namespace
        stanza = etree.Element(
            el.tag, attrib=el.attrib, nsmap={None: namespace} if namespace else None
        )
        stanza.text = el.text
        stanza.extend(el)
        assert self._root is not None
        self._root.clear()
        return stanza
