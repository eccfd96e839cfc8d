"""Playing a :class:`~tests.transcripts.script.Transcript` against a running server.

Steps run in file order. ``receives`` takes the client's next stanzas one by one, each
of which must match (:mod:`tests.transcripts.matching`); a stanza that does not, or does
not come within :data:`RECEIVE_TIMEOUT`, fails the file at that step's line. A stanza no
step accounts for fails too: ``receives nothing`` and ``disconnects`` look for them, and
so does the end of the file, for every client still connected.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import trio
from lxml import etree

from tests.transcripts.client import Connection, StreamClosed
from tests.transcripts.matching import mismatch, pretty
from tests.transcripts.script import Step, Transcript
from tests.transcripts.server import serving

#: Seconds a ``receives`` waits for each stanza.
RECEIVE_TIMEOUT = 5.0
#: ``TRANSCRIPT_RECORD=1 ./test tests/transcripts/x.scs -s``: print what the server sends
#: instead of checking it (see README.md: check it against the specification).
RECORD = os.environ.get("TRANSCRIPT_RECORD", "") not in ("", "0")
#: Seconds of silence that make ``receives nothing`` (and the end of a file) true.
QUIET = 0.3


class TranscriptFailure(Exception):
    """The server did something else than the file says; the message says what."""


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


class Player:
    def __init__(self, script: Transcript, port: int) -> None:
        self.script = script
        self.port = port
        self.connections: dict[str, Connection] = {}

    def fail(self, step: Step, message: str) -> TranscriptFailure:
        where = f"{self.script.path.name}:{step.line}"
        return TranscriptFailure(f"{where}: {message}")

    async def play(self) -> None:
        try:
            for step in self.script.steps:
                if RECORD:
                    await self.record(step)
                    continue
                await self.run(step)
            last = self.script.steps[-1]
            for who in [] if RECORD else list(self.connections):
                await self.nothing_more(last, who, "at the end of the file")
        finally:
            for connection in self.connections.values():
                await connection.abort()

    async def run(self, step: Step) -> None:
        if step.action == "wait":
            await trio.sleep(step.seconds)
            return
        if step.action == "connects":
            await self.connect(step)
            return
        connection = self.connections.get(step.who)
        if connection is None:
            raise self.fail(step, f"{step.who} is not connected")
        if step.action == "sends":
            await connection.send(step.text)
        elif step.action == "receives":
            await self.receive(step, connection)
        elif step.action == "receives-in-any-order":
            await self.receive_unordered(step, connection)
        elif step.action == "receives-nothing":
            await self.nothing_more(step, step.who, "")
        elif step.action == "disconnects":
            del self.connections[step.who]
            extra = await connection.close()
            if extra:
                raise self.unexpected(step, step.who, extra, "before the server closed the stream")

    async def record(self, step: Step) -> None:
        """Authoring aid: run everything but ``receives``; print what every client got."""
        if step.action not in ("receives", "receives-in-any-order", "receives-nothing"):
            await self.run(step)
        print(f"\n# line {step.line}: {step.who} {step.action}")
        for who, connection in self.connections.items():
            got = await connection.pending(QUIET)
            if got:
                stanzas = "\n".join(pretty(s) for s in got)
                print(f"\n{who} receives:\n" + textwrap.indent(stanzas, "\t"))

    async def connect(self, step: Step) -> None:
        client = self.script.clients[step.who]
        if step.who in self.connections:
            raise self.fail(step, f"{step.who} is already connected")
        connection = await Connection.open(self.port, client.jid.split("@", 1)[1].split("/")[0])
        self.connections[step.who] = connection
        try:
            bound = await connection.login(client.localpart, client.password, client.resource)
        except (StreamClosed, TimeoutError) as exc:
            raise self.fail(step, f"{step.who} could not log in: {exc!r}") from None
        if "/" in client.jid and bound != client.jid:
            raise self.fail(step, f"{step.who} was bound to {bound}, not {client.jid}")

    async def receive(self, step: Step, connection: Connection) -> None:
        total = len(step.stanzas)
        for number, expected in enumerate(step.stanzas, 1):
            label = f"{step.who} receives (stanza {number} of {total})"
            try:
                got = await connection.next(RECEIVE_TIMEOUT)
            except TimeoutError:
                raise self.fail(
                    step,
                    f"{label}: nothing arrived within {RECEIVE_TIMEOUT:g} s\n"
                    f"  expected:\n{_indent(pretty(expected))}",
                ) from None
            except StreamClosed:
                raise self.fail(
                    step,
                    f"{label}: the server closed the stream\n"
                    f"  expected:\n{_indent(pretty(expected))}",
                ) from None
            reason = mismatch(expected, got)
            if reason is not None:
                after = await connection.pending(QUIET)
                rest = "".join(f"\n  then:\n{_indent(pretty(s))}" for s in after)
                raise self.fail(
                    step,
                    f"{label}: {reason}\n  expected:\n{_indent(pretty(expected))}\n"
                    f"  got:\n{_indent(pretty(got))}{rest}",
                )

    async def receive_unordered(self, step: Step, connection: Connection) -> None:
        """The next ``len(step.stanzas)`` stanzas, matched to the expected ones in any order
        (for stanzas whose relative order no specification fixes)."""
        waiting = list(step.stanzas)
        total = len(waiting)
        for number in range(1, total + 1):
            label = f"{step.who} receives in any order (stanza {number} of {total})"
            try:
                got = await connection.next(RECEIVE_TIMEOUT)
            except (TimeoutError, StreamClosed) as exc:
                missing = "\n".join(_indent(pretty(e)) for e in waiting)
                why = (
                    "the server closed the stream"
                    if isinstance(exc, StreamClosed)
                    else (f"nothing arrived within {RECEIVE_TIMEOUT:g} s")
                )
                raise self.fail(step, f"{label}: {why}\n  still expected:\n{missing}") from None
            match = next((e for e in waiting if mismatch(e, got) is None), None)
            if match is None:
                expected = "\n".join(_indent(pretty(e)) for e in waiting)
                raise self.fail(
                    step,
                    f"{label}: matches none of the stanzas still expected\n"
                    f"  expected one of:\n{expected}\n  got:\n{_indent(pretty(got))}",
                )
            waiting.remove(match)

    async def nothing_more(self, step: Step, who: str, when: str) -> None:
        extra = await self.connections[who].pending(QUIET)
        if extra:
            raise self.unexpected(step, who, extra, when)

    def unexpected(
        self, step: Step, who: str, stanzas: list[etree._Element], when: str
    ) -> TranscriptFailure:
        shown = "\n".join(_indent(pretty(s)) for s in stanzas)
        when = f" {when}" if when else ""
        return self.fail(step, f"{who} received stanzas no step expects{when}:\n{shown}")


async def play(script: Transcript, data_dir: Path) -> None:
    """Start a fresh server for ``script`` and play it."""
    clients = script.clients.values()
    async with serving(data_dir, script.config, clients, script.nicks) as port:
        await Player(script, port).play()
