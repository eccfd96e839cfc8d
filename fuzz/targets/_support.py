"""Helpers shared by the fuzz targets: the invariants they all assert.

A target fails (libFuzzer keeps the input) on any exception that escapes ``TestOneInput``:
an ``AssertionError`` from a broken invariant, or a Python exception the product code let
through where the protocol says "answer with an XMPP error".
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from xml.sax.saxutils import quoteattr

from lxml import etree

from xmppd.xml import ns
from xmppd.xml.errors import STANZA_ERROR_TYPES, STREAM_CONDITIONS, StanzaError, StreamError
from xmppd.xml.parser import StreamParser

_HEADER = f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}'>".encode()


def splits(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


def check_stream_error(err: StreamError) -> None:
    """A defined condition, and the error element is XML a client can parse."""
    assert err.condition in STREAM_CONDITIONS, err.condition
    parser = StreamParser()
    events = parser.feed(_HEADER + err.to_bytes())
    parser.dispose()
    [el] = [e for e in events if isinstance(e, etree._Element)]
    assert el.tag == "{%s}error" % ns.STREAMS, el.tag


def check_stanza_error(err: StanzaError) -> None:
    assert err.condition in STANZA_ERROR_TYPES, err.condition


def reparse(el: etree._Element, default_ns: str | None = ns.CLIENT) -> etree._Element:
    """``el`` serialized and parsed back by a fresh stream parser whose header declares the
    same default namespace as the stream ``el`` came from (none: a stream the c2s layer
    refuses with invalid-namespace, which the parser alone still reads): it must come
    back equal."""
    data = etree.tostring(el)
    parser = StreamParser()
    header = _HEADER if default_ns == ns.CLIENT else _header(default_ns)
    events = parser.feed(header + data)
    parser.dispose()
    stanzas = [e for e in events if isinstance(e, etree._Element)]
    assert len(stanzas) == 1, (data, events)
    again = etree.tostring(stanzas[0])
    assert canonical(stanzas[0]) == canonical(el), (data, again)
    return stanzas[0]


def _header(default_ns: str | None) -> bytes:
    declared = "" if default_ns is None else " xmlns=%s" % quoteattr(default_ns)
    return f"<stream:stream{declared} xmlns:stream='{ns.STREAMS}'>".encode()


def canonical(el: etree._Element) -> bytes:
    """C14N 2.0 form: equal for equal infosets whatever the prefixes."""
    return etree.tostring(el, method="c14n2")
