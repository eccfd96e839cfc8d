"""What every stream machine here shares: its transition table, parser feed, output,
opening, closing, and turning a protocol error into a closed stream.

The c2s stream (:mod:`xmppd.stream.c2s`) and both sides of the component handshake
(:mod:`xmppd.stream.component`) are :class:`StreamMachine` subclasses. A machine's phase
changes in one place, :meth:`StreamMachine._go`, by one table per stream (:class:`Rules`;
the model is h11's ``_state.py``: everything that affects the state machine lives in one
table). The events of a table are of three kinds, and a missing row means:

- **peer**: something the peer sent (a header, an element, its closing tag). No row: a
  protocol error, answered with the stream error the table gives for it (RFC 6120
  §4.9.3) and the stream closes;
- **answer**: the shell reports what it did (a TLS handshake, a backend verdict, a
  bind). No row: the answer is stale (the stream closed or moved on) and is ignored;
- **outcome**: what the machine itself decided (a SASL step, a stream error, a close).
  No row: our bug, answered with ``internal-server-error``.

Nothing raises out of a machine: every entry point turns a :class:`StreamError` into
the error, the closing tag and :class:`StreamEnded`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from lxml import etree

from xmppd.xml.errors import StreamError
from xmppd.xml.parser import StreamClose, StreamOpen


class TableEnum(enum.Enum):
    """An enum whose members hash by identity (they are singletons, compared by identity).

    ``enum.Enum.__hash__`` is a Python function (the hash of the member's name), and the
    transition tables hash a phase and an event for every element a stream receives: as
    ``object.__hash__`` the lookup stays in C.
    """

    __hash__ = object.__hash__


P = TypeVar("P", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The stream is over; close the transport. ``error``: the stream error we sent (or,
    on a connecting side, received); ``by_peer``: the peer closed first."""

    error: StreamError | None = None
    by_peer: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """The stream error for a peer event a phase has no row for; ``{name}`` in ``text``
    becomes the refused element's local name."""

    condition: str
    text: str


@dataclass(frozen=True)
class Rules(Generic[P, E]):
    """One stream's transition table and what a missing row means (module docstring)."""

    initial: P
    closed: P
    #: (phase, event) -> next phase: every phase change there is.
    transitions: Mapping[tuple[P, E], P]
    #: Events the peer causes, and the shell's answers; the rest are our outcomes.
    peer: frozenset[E]
    answers: frozenset[E]
    #: The refusal of a peer event without a row: by (phase, event), else by event,
    #: else by phase.
    refusals: Mapping[Any, Refusal]
    #: The events that close the stream: the peer's closing tag, our stream error, our close.
    peer_close: E
    error: E
    end: E
    #: Phases that drop peer input unread (closed; waiting for TLS, RFC 6120 §5.4.3.3).
    deaf: frozenset[P]

    def refusal(self, phase: P, event: E, el: etree._Element | None = None) -> StreamError:
        found = (
            self.refusals.get((phase, event))
            or self.refusals.get(event)
            or self.refusals.get(phase)
            or Refusal("undefined-condition", "unexpected input")
        )
        name = etree.QName(el).localname if el is not None else event.value
        return StreamError(found.condition, found.text.format(name=name))

    def reachable(self) -> set[P]:
        """Phases some sequence of events leads to from ``initial``."""
        seen = {self.initial}
        frontier = [self.initial]
        while frontier:
            phase = frontier.pop()
            for (src, _event), dst in self.transitions.items():
                if src is phase and dst not in seen:
                    seen.add(dst)
                    frontier.append(dst)
        return seen


def closing_rows(phases: Collection[P], closed: P, *events: E) -> dict[tuple[P, E], P]:
    """Rows taking every phase in ``phases`` to ``closed`` on each of ``events``."""
    return {(phase, event): closed for phase in phases for event in events}


class StreamMachine(Generic[P, E]):
    """Output frames, one parser, the phase and the table; subclasses add the protocol."""

    __slots__ = ("_header_sent", "_out", "_parser", "phase")

    RULES: ClassVar[Rules[Any, Any]]

    def __init__(self, parser: Any) -> None:
        self._out: list[bytes] = []
        self._parser = parser
        self._header_sent = False
        self.phase: P = self.RULES.initial

    # ------------------------------------------------------------------ output
    def data_to_send(self) -> bytes:
        """Bytes produced since the last call, in order."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def frames_to_send(self) -> list[bytes]:
        """Output since the last call, one top-level element (or header/close) per item."""
        frames = self._out
        self._out = []
        return frames

    def send(self, data: bytes) -> None:
        """Queue one frame (a complete element, or for TCP any bytes)."""
        if data:
            self._out.append(data)

    @property
    def closed(self) -> bool:
        return self.phase is self.RULES.closed

    def dispose(self) -> None:
        """Free parser state; the connection is gone."""
        self._parser.dispose()

    # ------------------------------------------------------------------ the table
    def _go(self, event: E, el: etree._Element | None = None) -> bool:
        """Take the table's row for ``event`` (caused by ``el``, if an element) in this
        phase. Without one: a peer event raises its refusal, an answer returns False
        (stale), an outcome raises ``internal-server-error``."""
        rules = self.RULES
        nxt = rules.transitions.get((self.phase, event))
        if nxt is not None:
            self.phase = nxt
            return True
        if event in rules.answers:
            return False
        if event in rules.peer:
            raise rules.refusal(self.phase, event, el)
        raise StreamError("internal-server-error", f"no {event.value} in {self.phase.value}")

    def _answer(self, event: E, then: Callable[[list[Any]], None]) -> list[Any]:
        """A shell answer: take its row (or ignore it as stale), then ``then(events)``."""
        events: list[Any] = []
        try:
            if self._go(event):
                then(events)
        except StreamError as err:
            events.append(self._fail(err))
        return events

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> list[Any]:
        """Feed bytes from the peer; returns the events they complete."""
        if self.phase in self.RULES.deaf:
            return []
        events: list[Any] = []
        deaf = self.RULES.deaf
        try:
            for item in self._parser.feed(data):
                if isinstance(item, StreamOpen):
                    self._on_header(item, events)
                elif isinstance(item, StreamClose):
                    self._on_peer_close(events)
                else:
                    self._on_element(item, events)
                if self.phase in deaf:
                    break  # closed, or TLS comes next: later bytes are not to be trusted
        except StreamError as err:
            events.append(self._fail(err))
        return events

    def _on_peer_close(self, events: list[Any]) -> None:
        """The peer's closing tag: ours in answer, and the stream is over."""
        self._go(self.RULES.peer_close)
        self.send(self._closing_bytes())
        events.append(StreamEnded(by_peer=True))

    def _on_header(self, header: StreamOpen, events: list[Any]) -> None:
        raise NotImplementedError

    def _on_element(self, el: etree._Element, events: list[Any]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ our side
    def _header_bytes(self) -> bytes:
        raise NotImplementedError

    def _closing_bytes(self) -> bytes:
        return b"</stream:stream>"

    def _error_bytes(self, err: StreamError) -> bytes:
        return err.to_bytes()

    def _ensure_header(self) -> None:
        """Our stream header, once per stream (an error may be the first thing we say)."""
        if not self._header_sent:
            self.send(self._header_bytes())
            self._header_sent = True

    def _fail(self, err: StreamError) -> StreamEnded:
        """Error-to-close: the stream error, our closing tag, and the stream is over."""
        if self.closed:
            return StreamEnded(error=err)
        self._ensure_header()
        self.send(self._error_bytes(err))
        self.send(self._closing_bytes())
        self._go(self.RULES.error)
        return StreamEnded(error=err)

    def _end(
        self,
        condition: str | None = None,
        text: str | None = None,
        app: etree._Element | None = None,
    ) -> StreamEnded:
        """End the stream from our side, with a stream error when ``condition`` is set."""
        if self.closed:
            return StreamEnded()
        if condition is not None:
            return self._fail(StreamError(condition, text, app))
        self._ensure_header()
        self.send(self._closing_bytes())
        self._go(self.RULES.end)
        return StreamEnded()
