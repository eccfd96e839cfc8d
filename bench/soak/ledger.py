"""Who sent which room message when, whose echo came back, and who received what.

Messages are numbered globally (the body carries the number), so each receiver's record is
a bytearray indexed by that number: counts of live deliveries (SM resends included) and a
flag for copies fetched from the archive (MAM) after a rejoin. A message is *expected* by
every occupant that was in the room when it was sent, if its sender saw it echoed.
"""

from __future__ import annotations

import array
import re
import time
from dataclasses import dataclass, field

BODY = re.compile(r"<body>soak g=(\d+) s=(\d+)</body>")


def body(serial: int, sender: int) -> str:
    return f"soak g={serial} s={sender}"


@dataclass
class Receiver:
    """One client's view: live counts and archive copies, indexed by message number."""

    live: bytearray = field(default_factory=bytearray)
    mam: bytearray = field(default_factory=bytearray)
    joined_at: float = 0.0  # monotonic time of the first completed join (0: never)

    def _grow(self, serial: int) -> None:
        if serial >= len(self.live):
            extra = serial + 1024 - len(self.live)
            self.live.extend(bytes(extra))
            self.mam.extend(bytes(extra))

    def got_live(self, serial: int) -> None:
        self._grow(serial)
        if self.live[serial] < 255:
            self.live[serial] += 1

    def got_archived(self, serial: int) -> None:
        self._grow(serial)
        if self.mam[serial] < 255:
            self.mam[serial] += 1


class Ledger:
    def __init__(self) -> None:
        self.sent_at = array.array("d")  # monotonic send time per message number
        self.echo_at = array.array("d")  # 0: the sender never saw the echo
        self.sender = array.array("i")
        self.chat_sent_at = array.array("d")
        self.chat_to = array.array("i")
        self.chat_ack = bytearray()  # one-to-one messages: acknowledged by the server
        self.chat_rx = bytearray()  # ... and received by their one recipient (count)
        #: the XEP-0359 stanza-ids each received copy carried (only for messages received
        #: more than once is the set kept longer than one entry): tells a redelivery of
        #: the one stored stanza (same id) from a message the sender sent twice.
        self.chat_ids: dict[int, list[str]] = {}
        self.latencies: list[float] = []  # sampled send-to-receive seconds (live)
        self.latencies_by_kind: dict[str, list[float]] = {}  # the same, per transport
        self.sample_every = 1  # keep one latency in this many

    def new(self, sender: int) -> int:
        self.sent_at.append(time.monotonic())
        self.echo_at.append(0.0)
        self.sender.append(sender)
        return len(self.sent_at) - 1

    def new_chat(self, recipient: int) -> int:
        self.chat_sent_at.append(time.monotonic())
        self.chat_to.append(recipient)
        self.chat_ack.append(0)
        self.chat_rx.append(0)
        return len(self.chat_ack) - 1

    def chat_acked(self, serial: int) -> None:
        self.chat_ack[serial] = 1

    def chat_received(self, serial: int, stanza_id: str = "") -> None:
        if serial < len(self.chat_rx) and self.chat_rx[serial] < 255:
            self.chat_rx[serial] += 1
            self.chat_ids.setdefault(serial, []).append(stanza_id)

    def lost_chats(self, t0: float, limit: int = 40) -> list[tuple[float, int]]:
        """(seconds after ``t0`` it was sent, recipient) of acknowledged, never received
        one-to-one messages: lined up against the faults' times."""
        out = []
        for g, (acked, got) in enumerate(zip(self.chat_ack, self.chat_rx, strict=True)):
            if acked and not got and len(out) < limit:
                out.append((round(self.chat_sent_at[g] - t0, 1), self.chat_to[g]))
        return out

    def chat_counts(self) -> dict[str, int]:
        """One-to-one messages: the server acknowledged them, did their recipient get them?"""
        out = {
            "sent": len(self.chat_ack),
            "acked": 0,
            "received": 0,
            "lost": 0,
            "duplicated": 0,
            "duplicated_same_stanza_id": 0,
            "unacked_received": 0,
        }
        for serial, (acked, got) in enumerate(zip(self.chat_ack, self.chat_rx, strict=True)):
            if got > 1:
                out["duplicated"] += got - 1
                ids = self.chat_ids.get(serial, [])
                # a copy with a stanza-id seen before: the server delivered its one stored
                # stanza again (XEP-0198 at-least-once); a client drops it by that id
                out["duplicated_same_stanza_id"] += len(ids) - len(set(ids)) if all(ids) else 0
            if acked:
                out["acked"] += 1
                out["received" if got else "lost"] += 1
            elif got:
                out["unacked_received"] += 1
        return out

    def echoed(self, serial: int) -> None:
        if serial < len(self.echo_at) and not self.echo_at[serial]:
            self.echo_at[serial] = time.monotonic()

    def latency(self, serial: int, receiver: int, kind: str = "") -> None:
        if receiver % self.sample_every == 0 and serial < len(self.sent_at):
            seconds = time.monotonic() - self.sent_at[serial]
            self.latencies.append(seconds)
            self.latencies_by_kind.setdefault(kind, []).append(seconds)

    def count(
        self,
        rx: Receiver,
        start: int = 0,
        stop: int | None = None,
        until: float | None = None,
        lost: list[int] | None = None,
    ) -> dict[str, int]:
        """expected/received/lost/duplicated for one receiver over message numbers
        [start, stop) sent before ``until`` (monotonic); the lost ones' numbers go
        into ``lost``."""
        stop = len(self.sent_at) if stop is None else stop
        out = {
            "expected": 0,
            "received": 0,
            "lost": 0,
            "duplicated": 0,
            "archive_duplicated": 0,
            "unacked_received": 0,
        }
        if not rx.joined_at:
            return out
        live, mam = rx.live, rx.mam
        n = len(live)
        for g in range(start, stop):
            sent = self.sent_at[g]
            if sent < rx.joined_at or (until is not None and sent > until):
                continue
            got_live = live[g] if g < n else 0
            got_mam = mam[g] if g < n else 0
            if got_live > 1:
                out["duplicated"] += got_live - 1
            if got_mam > 1:
                out["archive_duplicated"] += got_mam - 1
            if self.echo_at[g]:
                out["expected"] += 1
                if got_live or got_mam:
                    out["received"] += 1
                else:
                    out["lost"] += 1
                    if lost is not None:
                        lost.append(g)
            elif got_live or got_mam:
                out["unacked_received"] += 1
        return out
