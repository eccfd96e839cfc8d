"""Durable room messages: a room's output is held until the archive has committed it.

Issue 15 part 2, as ejabberd and Prosody do it: a groupchat message of a persistent room
is in the archive (committed) before its echo reaches the sender and before any occupant
sees it. The room decides everything when it accepts the message (stanza-id, history
ring: the pure core); only the fan-out waits for the commit.

Each queued write gets a sequence number in queue order. An output is released once no
write numbered at or below its own is still uncommitted (queued or in flight). A room's
later output is held behind its earlier output (it inherits at least that number), so
occupants see a room's stanzas in the order they were accepted, even across batches.
Outputs of rooms with nothing held and no archived message pass straight through.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lxml import etree

from xmppd.muc.history import HistoryEntry
from xmppd.muc.out import Out
from xmppd.storage.muc import Write
from xmppd.xml import ns
from xmppd.xml.errors import error_element

#: A queued change and its sequence number.
Item = tuple[int, Write]


@dataclass(slots=True, frozen=True)
class Bounce:
    """Whom a held message's error goes to if its commit never comes.

    Only the addresses and the id are kept (taken before the room rewrites the stanza):
    the error stanza itself is built on expiry, which almost never happens, instead of
    once per groupchat message (it was ~15 % of a fan-out's CPU).
    """

    room_jid: str
    sender: str
    stanza_id: str | None

    def element(self) -> etree._Element:
        return commit_error(self.room_jid, self.sender, self.stanza_id)


@dataclass(slots=True, eq=False)
class Held:
    """One room output waiting for the commit of the writes numbered up to ``seq``."""

    room: str
    seq: int
    out: Out
    #: ``trio.current_time()`` after which the sender is answered with an error instead
    deadline: float
    #: the queue entries of this output's own writes, by identity
    writes: list[Item] = field(default_factory=list)
    #: the archived messages (undone in the history ring if the commit never comes)
    entries: list[HistoryEntry] = field(default_factory=list)
    #: whom to tell when it expires (made into a stanza only then); None: nobody
    bounce: Bounce | None = None


class CommitGate:
    """Per-room FIFOs of held outputs (pure bookkeeping: the service writes and sends)."""

    def __init__(self) -> None:
        self.rooms: dict[str, deque[Held]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self.rooms.values())

    def busy(self, room: str) -> bool:
        """Whether ``room`` has output held (so its next output must queue behind it)."""
        return bool(self.rooms.get(room))

    def last_seq(self, room: str) -> int:
        """The number the room's newest held output waits for (0 when none)."""
        q = self.rooms.get(room)
        return q[-1].seq if q else 0

    def hold(self, held: Held) -> None:
        held.seq = max(held.seq, self.last_seq(held.room))
        self.rooms.setdefault(held.room, deque()).append(held)

    def release(self, low: int) -> list[Held]:
        """Every output whose writes are all committed (``seq < low``, the lowest number
        still uncommitted), each room's in the order held."""
        ready: list[Held] = []
        for name in list(self.rooms):
            q = self.rooms[name]
            while q and q[0].seq < low:
                ready.append(q.popleft())
            if not q:
                del self.rooms[name]
        return ready

    def expired(self, now: float, removable: Callable[[Held], bool]) -> list[Held]:
        """Outputs with archived messages past their deadline whose writes can still be
        taken back (``removable``: none of them is in flight); removed from the gate."""
        gone: list[Held] = []
        for name in list(self.rooms):
            q = self.rooms[name]
            for held in list(q):
                if held.entries and held.deadline <= now and removable(held):
                    q.remove(held)
                    gone.append(held)
            if not q:
                del self.rooms[name]
        return gone


class WriteQueue:
    """The service's changes waiting to be written, numbered in queue order, with the
    number of the batch being committed (so a held output knows when it is safe)."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.seq = 0
        #: the first number of the batch in flight; None when none is
        self.inflight: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def add(self, writes: Iterable[Write]) -> list[Item]:
        """Number and queue ``writes``; the entries made."""
        added = []
        for w in writes:
            self.seq += 1
            added.append((self.seq, w))
        self.items.extend(added)
        return added

    def take(self, size: int) -> list[Item]:
        """The next batch (at most ``size``), now in flight."""
        batch, self.items = self.items[:size], self.items[size:]
        self.inflight = batch[0][0] if batch else None
        return batch

    def done(self, batch: list[Item], ok: bool) -> None:
        """The batch in flight was committed, or failed (back to the head, in order)."""
        self.inflight = None
        if not ok:
            self.items[:0] = batch

    def low(self) -> int:
        """The lowest number not yet committed (queued or in flight)."""
        low = self.seq + 1
        if self.items:
            low = min(low, self.items[0][0])
        if self.inflight is not None:
            low = min(low, self.inflight)
        return low

    def expire(self, gate: CommitGate, now: float) -> list[Held]:
        """Take back the writes of held outputs past their deadline (not in flight)."""
        queued = {id(item) for item in self.items}
        gone = gate.expired(now, lambda h: all(id(w) in queued for w in h.writes))
        drop = {id(w) for h in gone for w in h.writes}
        if drop:
            self.items = [item for item in self.items if id(item) not in drop]
        return gone


def commit_error(room_jid: str, sender: str, stanza_id: str | None) -> etree._Element:
    """The error the sender gets if its message (``stanza_id``) is never committed.

    RFC 6120 §8.3.3.18: the database did not commit in time, a temporary lack of
    resources, so ``resource-constraint`` with type ``wait`` (the sender may retry);
    ``internal-server-error`` (§8.3.3.6) means a fault that retrying will not fix.
    """
    reply = etree.Element("{%s}message" % ns.CLIENT, type="error", nsmap={None: ns.CLIENT})
    reply.set("from", room_jid)
    reply.set("to", sender)
    if stanza_id is not None:
        reply.set("id", stanza_id)
    text = "the room archive is not available; try again later"
    reply.append(error_element("resource-constraint", "wait", text))
    return reply


__all__ = ["Bounce", "CommitGate", "Held", "WriteQueue", "commit_error"]
