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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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

# ``\Z``, not ``$``: ``$`` also matches before a final newline, and "<\n" is no lone "<".
_MARKUP = re.compile(rb"<[!?]|&|<\Z")
_PREDEFINED_ENTITY = re.compile(rb"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_ENTITY_PREFIX = re.compile(rb"&(?:[a-z]{0,4}|#[0-9]{0,7}|#x[0-9a-fA-F]{0,6})\Z")
_XML_DECL = re.compile(rb"<\?xml\s[^?<>]{0,200}\?>")
_CDATA_OPEN = b"<![CDATA["
# Where a stanza may end: after an end tag or an empty-element tag not directly followed
# by another end tag (that one would close the stream, not end a stanza). ``feed`` hands
# libxml2 the bytes up to each such point separately, so every byte is charged to the
# stanza it belongs to and "between stanzas" is known exactly.
_STANZA_END = re.compile(rb"(?:</[^>]*>|/>)(?!\s*</)")
# The end of a stream header, so its bytes are not charged to the first stanza.
_HEADER_END = re.compile(rb"""<(?:[\w.-]+:)?stream(?:\s+[^\s=>]+\s*=\s*(?:'[^']*'|"[^"]*"))*\s*>""")


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

    @property
    def pending(self) -> bool:
        """Bytes held back or an open CDATA section: the stream is mid-token."""
        return bool(self._carry) or self._in_cdata

    def scan(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        self._carry = b""
        i = 0
        if not self._seen_markup:
            stripped = buf.lstrip()
            if stripped == b"<":  # maybe the start of an XML declaration: wait for more
                self._carry = buf
                return
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


class _StanzaTarget:
    """lxml parser target: builds one stanza at a time with a TreeBuilder.

    A target parser keeps no document tree, so an idle stream costs about 1 KiB of
    parser state instead of about 10 KiB for a tree-building pull parser (measured).
    Events are queued and drained by :meth:`StreamParser.feed`.
    """

    __slots__ = (
        "builder",
        "default_ns",
        "depth",
        "events",
        "max_depth",
        "pending_ns",
        "root_nsmap",
        "silent_open",
    )

    def __init__(self, max_depth: int) -> None:
        self.events: list[ParserEvent] = []
        self.depth = 0
        self.max_depth = max_depth
        self.builder: etree.TreeBuilder | None = None
        self.default_ns: str | None = None
        self.root_nsmap: dict[str, str] = {}
        #: Declarations reported by ``start_ns`` for the element whose ``start`` is next.
        self.pending_ns: dict[str | None, str] = {}
        #: Set while replaying a header after hibernation: swallow its StreamOpen.
        self.silent_open = False

    def start_ns(self, prefix: str | None, uri: str) -> None:
        """One namespace declaration of the element whose ``start`` comes next.

        Declarations are collected here rather than read from the ``nsmap`` argument of
        ``start``: lxml 6.2.0 passes an empty ``nsmap`` to targets (LP#2178248), while
        ``start_ns`` is reported the same way by every lxml release.
        """
        self.pending_ns[prefix or None] = uri

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        depth = self.depth
        if attrib:
            attrib = _literal_ampersands(attrib)
        declared = self.pending_ns
        if declared:
            self.pending_ns = {}
        if depth == 1:
            self._open(tag, attrib, declared)
            return
        if depth > self.max_depth:
            raise StreamError("policy-violation", "XML nested too deeply")
        if depth == 2:
            self.builder = etree.TreeBuilder()
            namespace = tag[1 : tag.index("}")] if tag[:1] == "{" else None
            if namespace:
                declared = dict(declared) if declared else {}
                declared.setdefault(None, namespace)
        assert self.builder is not None
        self.builder.start(tag, attrib, declared)

    def _open(self, tag: str, attrib: dict[str, str], declared: dict[str | None, str]) -> None:
        if tag != "{%s}stream" % ns.STREAMS:
            if tag.rpartition("}")[2] == "stream":
                raise StreamError(
                    "invalid-namespace", "the stream element is in the wrong namespace"
                )
            raise StreamError("not-well-formed", "expected <stream:stream>")
        if self.silent_open:
            self.silent_open = False
            return
        self.root_nsmap = {(prefix or ""): uri for prefix, uri in declared.items()}
        self.default_ns = self.root_nsmap.get("")
        self.events.append(StreamOpen(dict(attrib), self.default_ns))

    def end(self, tag: str) -> None:
        self.depth -= 1
        depth = self.depth
        if depth >= 1:
            assert self.builder is not None
            self.builder.end(tag)
            if depth == 1:
                self.events.append(self.builder.close())
                self.builder = None
        else:
            self.events.append(StreamClose())

    def data(self, text: str) -> None:
        if self.builder is not None:
            self.builder.data(text)

    def comment(self, text: str) -> None:
        raise StreamError("restricted-xml", "comments are not allowed")

    def pi(self, target: str, data: str | None = None) -> None:
        raise StreamError("restricted-xml", "processing instructions are not allowed")

    def doctype(self, *args: object) -> None:
        raise StreamError("restricted-xml", "DTDs are not allowed")

    def close(self) -> None:
        return None


def _literal_ampersands(attrib: dict[str, str]) -> dict[str, str]:
    """Attribute values as written: libxml2 without entity substitution hands a target
    every ``&`` of an attribute value as the text ``&#38;`` (all other references are
    decoded), so a nick ``Tom & Jerry`` arrived as ``Tom &#38; Jerry``. Undo exactly that.
    """
    for value in attrib.values():
        if "&" in value:
            return {k: v.replace("&#38;", "&") for k, v in attrib.items()}
    return attrib


class _Forward:
    """The target lxml sees: forwards to whichever stream currently owns the parser.

    lxml inspects a Python target's method signatures (``inspect.getfullargspec``)
    every time a parser starts a document, about 35 µs, twice per login. Parsers are
    therefore pooled and reused (lxml allows ``feed()`` again after ``close()``), each
    bound once to a forwarder whose ``sink`` changes hands.
    """

    __slots__ = ("sink",)

    def __init__(self) -> None:
        self.sink: _StanzaTarget | None = None

    def start_ns(self, prefix: str | None, uri: str) -> None:
        self.sink.start_ns(prefix, uri)  # type: ignore[union-attr]

    # No ``end_ns``: with one, lxml stacks every open element's declarations until its
    # end tag, and a stream root never ends, so a pooled parser kept one list per stream
    # it ever served (closing it does not empty the stack).

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.sink.start(tag, attrib)  # type: ignore[union-attr]

    def end(self, tag: str) -> None:
        self.sink.end(tag)  # type: ignore[union-attr]

    def data(self, text: str) -> None:
        self.sink.data(text)  # type: ignore[union-attr]

    def comment(self, text: str) -> None:
        self.sink.comment(text)  # type: ignore[union-attr]

    def pi(self, target: str, data: str | None = None) -> None:
        self.sink.pi(target, data)  # type: ignore[union-attr]

    def doctype(self, *args: object) -> None:
        self.sink.doctype(*args)  # type: ignore[union-attr]

    def close(self) -> None:
        return None


_POOL_MAX = 64
_pool: list[etree.XMLParser] = []


def _acquire_parser(sink: _StanzaTarget) -> etree.XMLParser:
    if _pool:
        parser = _pool.pop()
    else:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            encoding="utf-8",
            collect_ids=False,
            target=_Forward(),
        )
    parser.target.sink = sink
    return parser


def _release_parser(parser: etree.XMLParser) -> None:
    """Close ``parser`` (lxml frees its C state only then) and keep it for reuse."""
    try:
        parser.close()
    except (etree.XMLSyntaxError, StreamError, ValueError):  # ValueError: see _feed_piece
        pass
    parser.target.sink = None
    if len(_pool) < _POOL_MAX:
        _pool.append(parser)


class StreamParser:
    """One XML stream (a new instance after every stream restart)."""

    __slots__ = (
        "_last_byte",
        "_parser",
        "_scanner",
        "_stanza_bytes",
        "_target",
        "closed",
        "max_depth",
        "max_stanza_size",
    )

    def __init__(self, max_stanza_size: int = 262_144, max_depth: int = 64) -> None:
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._target = _StanzaTarget(max_depth)
        self._parser: etree.XMLParser | None = self._new_libxml_parser()
        self._scanner = _RestrictedXmlScanner()
        self._stanza_bytes = 0
        self._last_byte = b""
        self.closed = False

    def _new_libxml_parser(self) -> etree.XMLParser:
        return _acquire_parser(self._target)

    def hibernate(self) -> bool:
        """Drop libxml2's state (about 10 KiB) while the stream sits between stanzas.

        Between stanzas the whole parse state is the stream root's namespace
        declarations, so :meth:`feed` can rebuild it by replaying a synthetic header.
        Only done when every byte fed so far has been consumed: no stanza open and the
        last byte fed was the ``>`` closing a stanza. Returns whether it hibernated.
        """
        target = self._target
        if (
            self._parser is None
            or self.closed
            or target.depth != 1
            or target.builder is not None
            or self._last_byte != b">"
            or self._stanza_bytes != 0
            or self._scanner.pending
        ):
            return False
        self.dispose()
        return True

    def dispose(self) -> None:
        """Free libxml2's parser state now.

        lxml frees a target parser's C state only when ``close()`` runs (measured: an
        unclosed one leaks about 350 bytes), so close it, ignoring the incomplete
        document it complains about.
        """
        parser = self._parser
        if parser is None:
            return
        self._parser = None
        target = self._target
        saved = (target.depth, target.builder, target.events)
        target.events = []
        _release_parser(parser)
        target.depth, target.builder, target.events = saved

    def _wake(self) -> etree.XMLParser:
        parser = self._new_libxml_parser()
        decls = "".join(
            f' xmlns{":" + prefix if prefix else ""}="{_escape_attr(uri)}"'
            for prefix, uri in self._target.root_nsmap.items()
        )
        self._target.silent_open = True
        self._target.depth = 0
        parser.feed(f"<stream:stream{decls}>".encode())
        self._parser = parser
        return parser

    @property
    def default_ns(self) -> str | None:
        return self._target.default_ns

    @property
    def between_stanzas(self) -> bool:
        """Inside the stream root with no element open (every byte fed was consumed)."""
        target = self._target
        return (
            not self.closed
            and target.depth == 1
            and target.builder is None
            and not self._scanner.pending
        )

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse ``data``; return the events it completes. Raises ``StreamError``."""
        if self.closed:
            return []
        self._scanner.scan(data)
        events: list[ParserEvent] = []
        start = 0
        if self._target.depth == 0:
            m = _HEADER_END.search(data)
            if m is not None:
                events += self._feed_piece(data[: m.end()], header_end=True)
                start = m.end()
        for m in _STANZA_END.finditer(data, start):
            end = m.end()
            if end < len(data):
                events += self._feed_piece(data[start:end])
                start = end
                if self.closed:
                    return events
        events += self._feed_piece(data[start:] if start else data)
        return events

    def _feed_piece(self, data: bytes, header_end: bool = False) -> list[ParserEvent]:
        target = self._target
        # Whitespace is free only between stanzas (keepalives): right after one ended,
        # with nothing of the next one fed yet. Inside a partial start tag it counts.
        if not (self._stanza_bytes == 0 and target.depth == 1 and data.isspace()):
            self._stanza_bytes += len(data)
        stripped = data.rstrip()
        if stripped:
            self._last_byte = stripped[-1:]
        parser = self._parser if self._parser is not None else self._wake()
        logged = len(parser.feed_error_log)
        try:
            parser.feed(data)
        except etree.XMLSyntaxError as exc:
            msg = str(exc)
            if "encoding" in msg.lower() or "invalid char" in msg.lower():
                raise StreamError("not-well-formed", "invalid UTF-8 or character") from None
            raise StreamError("not-well-formed", msg.split(", line")[0][:200]) from None
        except ValueError:  # lxml's name check: XML allows ``a:b:c``, XML-NAMES does not
            raise StreamError("not-well-formed", "invalid element or attribute name") from None
        if len(parser.feed_error_log) > logged:
            _check_namespaces(parser.feed_error_log[logged:])
        events = target.events
        if events:
            target.events = []
            if header_end and target.depth == 1:
                self._stanza_bytes = 0
            for event in events:
                if isinstance(event, StreamClose):
                    self.closed = True
            if any(isinstance(e, etree._Element) for e in events):
                if self._stanza_bytes > self.max_stanza_size:
                    raise StreamError(
                        "policy-violation", f"stanza larger than {self.max_stanza_size} bytes"
                    )
                # ``data`` ends where the stanza ended (see _STANZA_END), unless the
                # stream closed in it too.
                self._stanza_bytes = (
                    0 if target.depth == 1 and target.builder is None else len(data)
                )
        if self._stanza_bytes > self.max_stanza_size:
            raise StreamError(
                "policy-violation", f"stanza larger than {self.max_stanza_size} bytes"
            )
        return events


# libxml2 only logs these (XML-NAMES violations): the element would reach us with its
# prefix silently dropped, ``<x:message>`` as an un-namespaced ``message``.
_NAMESPACE_ERRORS = frozenset({"NS_ERR_UNDEFINED_NAMESPACE", "NS_ERR_XML_NAMESPACE"})


def _check_namespaces(log: Iterable[Any]) -> None:
    for entry in log:
        if entry.type_name in _NAMESPACE_ERRORS:
            raise StreamError("not-well-formed", "undeclared or empty namespace prefix")


def _escape_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def check_restricted_xml(data: bytes) -> None:
    """Raise ``StreamError`` if one complete document ``data`` holds restricted markup.

    For transports that receive whole documents (a BOSH ``<body/>``) rather than a
    stream: the same rules as :class:`StreamParser` (no DTD, comment, PI or entity).
    """
    scanner = _RestrictedXmlScanner()
    scanner.scan(data)
    if scanner.pending and data.rstrip()[-1:] != b">":
        raise StreamError("not-well-formed", "the document ends mid-token")
