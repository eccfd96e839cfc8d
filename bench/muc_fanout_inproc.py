"""In-process microbenchmark: one groupchat message through the MUC service to N occupants.

No sockets and no load client: a real Router and MucService over an in-memory SQLite
database, sessions whose outbox only counts bytes. It times ``MucService.handle`` for a
groupchat message (room logic, serialise once, fan-out of ``head + to + tail`` to every
occupant's session), so a change to the room or delivery path can be compared before and
after in seconds rather than with ``bench/run.py``'s full servers::

    .venv/bin/python -m bench.muc_fanout_inproc            # 20 occupants
    .venv/bin/python -m bench.muc_fanout_inproc --occupants 200 --messages 2000

Prints the best of ``--reps`` runs in microseconds per message (process CPU time, which
other load on a shared machine disturbs less than wall time) and deliveries per second.
"""

from __future__ import annotations

import argparse
import copy
import time
from datetime import UTC, datetime

import trio
from lxml import etree

from xmppd.jid import JID
from xmppd.muc.config import MucConfig
from xmppd.muc.service import MucService
from xmppd.router import Router
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, Database

DOMAIN = "example.org"
ROOM = f"sax@conference.{DOMAIN}"
C = "{jabber:client}"
MUC = "http://jabber.org/protocol/muc"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
#: messages per simulated group commit (the writer's batches under load are of this order)
COMMIT_EVERY = 20


class CountingOutbox:
    """Accepts everything and counts it: the cost measured is the server's, not a peer's."""

    def __init__(self) -> None:
        self.count = 0

    def enqueue(self, data: bytes) -> bool:
        self.count += 1
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        pass


class Everyone:
    async def user_exists(self, localpart: str) -> bool:
        return True


def _presence(room_nick: str, sender: str) -> etree._Element:
    p = etree.Element(C + "presence", nsmap={None: "jabber:client"})
    p.set("to", room_nick)
    p.set("from", sender)
    etree.SubElement(p, "{%s}x" % MUC, nsmap={None: MUC})
    return p


def _message(sender: str) -> etree._Element:
    m = etree.Element(C + "message", nsmap={None: "jabber:client"}, type="groupchat")
    m.set("to", ROOM)
    m.set("from", sender)
    m.set("id", "bench")
    etree.SubElement(m, C + "body").text = "a message of ordinary length, say forty chars"
    return m


def _commit_all(svc: MucService) -> None:
    """Stand in for the archive writer: drop what it would write, as if committed, and
    let the durable gate release the output it held (``[muc] durable``), so the cost of
    holding and releasing is in the figure."""
    queue = svc._queue
    if isinstance(queue, list):  # before durable room messages
        queue.clear()
        return
    queue.items.clear()
    svc._release()


async def _run(occupants: int, messages: int, reps: int) -> tuple[float, int]:
    db = Database("sqlite://")
    db.upgrade()
    router = Router(DOMAIN, Everyone())
    cfg = MucConfig(flood_burst=10**9, flood_rate=1e9, archive_batch_size=10**9)
    svc = MucService(router, AsyncDatabase(db), cfg, clock=lambda: NOW).install()
    outboxes = []
    for i in range(occupants):
        jid = JID.parse(f"user{i}@{DOMAIN}/r")
        outbox = CountingOutbox()
        outboxes.append(outbox)
        router.bind(Session(jid, outbox))
        await svc.handle(_presence(f"{ROOM}/nick{i}", str(jid)), JID.parse(f"{ROOM}/nick{i}"), None)
    sender = f"user0@{DOMAIN}/r"
    template = _message(sender)
    to = JID.parse(ROOM)
    best = float("inf")
    for _ in range(reps):
        stanzas = [copy.deepcopy(template) for _ in range(messages)]
        before = sum(o.count for o in outboxes)
        start = time.process_time()
        for n, stanza in enumerate(stanzas, 1):
            await svc.handle(stanza, to, None)
            if n % COMMIT_EVERY == 0:
                _commit_all(svc)
        _commit_all(svc)
        elapsed = time.process_time() - start
        delivered = sum(o.count for o in outboxes) - before
        assert delivered == messages * occupants, delivered
        best = min(best, elapsed)
    db.dispose()
    return best, messages * occupants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occupants", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    best, deliveries = trio.run(_run, args.occupants, args.messages, args.reps)
    per_msg = best / args.messages * 1e6
    print(
        f"occupants={args.occupants} messages={args.messages} best_of={args.reps}: "
        f"{per_msg:.1f} us CPU/message, {deliveries / best:,.0f} deliveries/CPU-s"
    )


if __name__ == "__main__":
    main()
