"""The restricted-XML scanner (RFC 6120 §11.1) in front of libxml2 (xmppd/xml/parser.py).

Invariants:
- chunking does not matter: the scanner's verdict on some bytes is the same whole, cut
  anywhere, or a byte at a time;
- what it lets through carries no comment, processing instruction, DTD or entity
  reference other than the predefined five and character references: parsed by libxml2
  (inside a stream root, CDATA kept), no such node or reference appears;
- ``check_restricted_xml`` (BOSH bodies) agrees with the scanner on complete documents.
"""

from __future__ import annotations

import re

from lxml import etree

from xmppd.xml.errors import StreamError
from xmppd.xml.parser import _XML_DECL, _RestrictedXmlScanner, check_restricted_xml

from _support import splits

_REF = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")


class _Recorder:
    """libxml2 target noting what restricted XML would have produced."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        return None

    def end(self, tag: str) -> None:
        return None

    def data(self, text: str) -> None:
        return None

    def comment(self, text: str) -> None:
        self.found.append("comment")

    def pi(self, target: str, data: str | None = None) -> None:
        self.found.append("pi")

    def doctype(self, *args: object) -> None:
        self.found.append("doctype")

    def close(self) -> None:
        return None


def verdict(chunks: list[bytes]) -> bool | None:
    """Refused (False), let through (True) or still held back at the end (None)."""
    scanner = _RestrictedXmlScanner()
    try:
        for chunk in chunks:
            scanner.scan(chunk)
    except StreamError as err:
        assert err.condition == "restricted-xml", err.condition
        return False
    return None if scanner._carry else True


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    cut, body = data[0], data[1:]
    whole = verdict([body])
    assert verdict(splits(body, [cut, cut * 5, cut * 11])) == whole, body
    if len(body) <= 128:
        assert verdict([bytes([b]) for b in body]) == whole, body
    if not whole:
        return  # refused, or held back at the end (a reference may still be completed)
    recorder = _Recorder()
    parser = etree.XMLParser(
        target=recorder, resolve_entities=False, no_network=True, load_dtd=False, strip_cdata=False
    )
    try:
        parser.feed(body)
        parser.close()
    except (etree.XMLSyntaxError, ValueError):
        pass  # not well-formed is the parser's business; the scanner only forbids markup
    assert not recorder.found, (body, recorder.found)
    # The XML declaration is libxml2's to judge (an '&' there is a syntax error, never a
    # reference); CDATA content is text.
    rest = _XML_DECL.sub(b"", body.lstrip(), count=1)
    outside_cdata = re.sub(rb"<!\[CDATA\[.*?\]\]>", b"", rest, flags=re.DOTALL)
    assert not _REF.search(outside_cdata.split(b"<![CDATA[")[0]), body
    if body.rstrip()[-1:] == b">":
        check_restricted_xml(body)  # complete documents: no error either
