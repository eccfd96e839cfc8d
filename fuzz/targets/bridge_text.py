"""The webridge and IRC text paths (bridges/irc/protocol.py, text.py, relay.py;
bridges/webridge/events.py).

Invariants:
- IRC: any bytes split into lines and parse to a ``Line`` or ``LineError``; a parsed line
  echoed back (PONG) is exactly one CR-LF-terminated line of the same command (CR, LF
  and NUL inside a parameter never start a second one); a
  buffered line never holds a newline or exceeds the limit;
- IRC -> room: whatever the IRC side sends becomes room text an XML stanza can carry;
- room -> IRC: a room message (nick up to the default 48 characters) becomes IRC lines of
  at most the PRIVMSG budget in bytes, without CR/LF/NUL, losing no non-space character
  unless the line cap says how many lines were left out;
- webridge: a datagram is an event or ``BadDatagram``; the rendered text fits
  ``max_length`` and an XML stanza can carry it.
"""

from __future__ import annotations

import atheris
from lxml import etree

from bridges.irc import protocol
from bridges.irc.relay import Formatter
from bridges.irc.text import privmsg_budget, protect_nick, strip_formatting
from bridges.webridge.events import BadDatagram, parse_datagram, render


def xml_safe(text: str) -> None:
    etree.Element("body").text = text  # raises ValueError on what XML cannot carry


def irc_lines(data: bytes, cuts: list[int]) -> None:
    buffer = protocol.LineBuffer(limit=200)
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        for raw in buffer.feed(data[start:cut]):
            assert b"\n" not in raw and len(raw) <= 200, raw
            try:
                line = protocol.parse(raw)
            except protocol.LineError:
                continue
            # What the client sends back built from what it read (PONG echoes params).
            wire = protocol.make("PONG", *(line.params or [""]))
            assert wire.endswith(b"\r\n") and wire.count(b"\n") == 1, wire
            assert b"\r" not in wire[:-2] and b"\0" not in wire, wire
            again = protocol.parse(wire[:-2])
            assert again.command == "PONG", wire
            if len(line.params) == 1:  # one parameter (PING :token): echoed exactly
                assert again.params == [line.params[0].replace("\r", " ").replace("\0", " ")]
            fmt = Formatter(nick_protection=True, max_lines=4)
            text = line.param(1)
            for out in (
                fmt.irc_message(line.nick or "n", text, action=False),
                fmt.irc_part(line.nick or "n", "#community", text),  # only our channel's
                fmt.irc_kick(line.param(1), line.nick or "n", line.param(2)),
            ):
                if out is not None:
                    xml_safe(out)
        start = cut


def room_to_irc(nick: str, body: str, max_lines: int) -> None:
    budget = privmsg_budget("xmppbridge", "#community")
    protect = bool(max_lines & 1)
    lines = Formatter(nick_protection=protect, max_lines=max_lines).room_message(nick, body, budget)
    nick = strip_formatting(nick)
    who = protect_nick(nick) if protect else nick
    action = body.startswith("/me ")
    head, tail = (f"\x01ACTION {who} ", "\x01") if action else (f"<{who}> ", "")
    pieces = []
    for line in lines:
        wire = protocol.make("PRIVMSG", "#community", line)
        assert len(line.encode()) <= budget, (line, budget)
        assert wire.count(b"\n") == 1 and b"\r" not in wire[:-2], wire
        assert line.startswith(head) and line.endswith(tail), (line, head)
        pieces.append(line[len(head) : len(line) - len(tail)])
    if not any(p.startswith("(… ") and p.endswith(" more lines)") for p in pieces):
        said = "".join(body.removeprefix("/me ").split())
        assert "".join("".join(p.split()) for p in pieces) == said, (body, lines)


def webridge(data: bytes, max_length: int) -> None:
    try:
        event = parse_datagram(data)
    except BadDatagram as err:
        assert err.reason
        return
    text = render(event, max_length=max_length, field_max_length=40)
    assert len(text) <= max_length, (text, max_length)
    xml_safe(text)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        cuts = [fdp.ConsumeIntInRange(0, 255) for _ in range(3)]
        irc_lines(fdp.ConsumeBytes(fdp.remaining_bytes()), cuts)
    elif kind == 1:
        nick = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(1, 48)) or "n"
        room_to_irc(
            nick, fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()), fdp.ConsumeIntInRange(0, 6)
        )
    else:
        webridge(fdp.ConsumeBytes(fdp.remaining_bytes()), fdp.ConsumeIntInRange(1, 400))
