"""The XML stream parser (xmppd/xml/parser.py) on arbitrary bytes, arbitrarily chunked.

Invariants:
- it yields a header, stanzas and a close, or raises ``StreamError`` with a defined
  condition (never another exception);
- every stanza serializes to XML that a fresh parser reads back to the same infoset;
- chunking does not matter: the same bytes fed in one piece or cut anywhere give the
  same events when neither run fails;
- nothing after ``</stream:stream>`` produces events.
"""

from __future__ import annotations

from lxml import etree

from xmppd.xml.errors import StreamError
from xmppd.xml.parser import StreamClose, StreamOpen, StreamParser

from _support import canonical, check_stream_error, reparse, splits

_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)


def run(chunks: list[bytes], max_size: int) -> list[object] | None:
    parser = StreamParser(max_stanza_size=max_size, max_depth=16)
    out: list[object] = []
    default_ns: str | None = None
    try:
        for chunk in chunks:
            events = parser.feed(chunk)
            for ev in events:
                assert not any(isinstance(e, StreamClose) for e in out), "event after close"
                if isinstance(ev, StreamOpen):
                    assert all(isinstance(v, str) for v in ev.attrs.values())
                    default_ns = ev.default_ns
                    out.append(("open", sorted(ev.attrs.items()), ev.default_ns))
                elif isinstance(ev, StreamClose):
                    out.append(ev)
                else:
                    assert isinstance(ev, etree._Element), ev
                    reparse(ev, default_ns)
                    out.append(canonical(ev))
            if parser.between_stanzas:
                parser.hibernate()  # as the shell does on an idle stream
    except StreamError as err:
        check_stream_error(err)
        return None
    finally:
        parser.dispose()  # back to the pool, as the shell does
    return out


def TestOneInput(data: bytes) -> None:
    if len(data) < 3:
        return
    mode, cut1, cut2, body = data[0], data[1], data[2], data[3:]
    if mode & 1:  # most inputs: a valid header first, so the fuzzer spends its time on stanzas
        body = _HEADER + body
    max_size = 64 + (mode >> 1) * 64
    whole = run([body], max_size)
    pieces = run(splits(body, [cut1 * 7, cut2 * 13, cut1 + cut2 + len(_HEADER)]), max_size)
    if whole is not None and pieces is not None:
        assert whole == pieces, (whole, pieces)
    # A byte at a time is the harshest chunking but costs a feed per byte: short inputs only.
    bytewise = run([bytes([b]) for b in body], max_size) if len(body) <= 96 else None
    if bytewise is not None and whole is not None:
        assert whole == bytewise, (whole, bytewise)
