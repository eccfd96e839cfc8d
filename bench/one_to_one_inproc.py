"""In-process microbenchmark: one-to-one messages through the router and its observers.

No sockets and no load client: the server's own assembly (``xmppd.server.Server`` with every
service the configuration builds: blocking, carbons, the accounts' archive, push, offline…)
over a SQLite file, two bound sessions whose outboxes only count bytes. It times
``Router.route`` for a chat message from one to the other (stamped as the c2s stream
leaves it), so a change to the one-to-one path can be compared before and after in seconds
rather than with ``bench/run.py``'s full servers::

    .venv/bin/python -m bench.one_to_one_inproc                  # [mam] default = "never"
    .venv/bin/python -m bench.one_to_one_inproc --mam roster     # archived, as shipped

Prints the best of ``--reps`` runs in microseconds per message (process CPU time, which
other load on a shared machine disturbs less than wall time) and the Python function calls
per message (``--calls``: under cProfile, a count no other load changes).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import tempfile
import time

import trio
from lxml import etree

from bench.muc_fanout_inproc import CountingOutbox
from xmppd.auth.internal import InternalAuthenticator
from xmppd.config import Config
from xmppd.jid import JID
from xmppd.server import Server
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, Database

C = "{jabber:client}"


def _message(sender: str, to: str) -> etree._Element:
    m = etree.Element(C + "message", nsmap={None: "jabber:client"}, type="chat")
    m.set("to", to)
    m.set("from", sender)
    m.set("id", "bench")
    etree.SubElement(m, C + "body").text = "a message of ordinary length, say forty chars"
    return m


async def _run(mam: str, messages: int, reps: int, calls: bool) -> tuple[float, float | None]:
    with tempfile.TemporaryDirectory() as data_dir:
        config = Config()
        config.server.data_dir = data_dir
        config.mam.default = mam
        db = Database(config.database_url)
        db.upgrade()
        adb = AsyncDatabase(db)
        server = Server(config, db, InternalAuthenticator(adb), adb)
        domain = config.server.domain
        async with trio.open_nursery() as nursery:
            await server.services.start(nursery)
            alice = Session(JID.parse(f"alice@{domain}/phone"), CountingOutbox())
            bob_outbox = CountingOutbox()
            bob = Session(JID.parse(f"bob@{domain}/laptop"), bob_outbox)
            for session in (alice, bob):
                session.available = True
                server.router.bind(session)
            template = _message(alice.full_str, f"bob@{domain}")
            best = float("inf")
            for _ in range(reps):
                stanzas = [copy.deepcopy(template) for _ in range(messages)]
                before = bob_outbox.count
                start = time.process_time()
                for stanza in stanzas:
                    await server.router.route(stanza, alice)
                best = min(best, time.process_time() - start)
                assert bob_outbox.count - before == messages, bob_outbox.count - before
            per_call = None
            if calls:
                stanzas = [copy.deepcopy(template) for _ in range(messages)]
                profile = cProfile.Profile()
                profile.enable()
                for stanza in stanzas:
                    await server.router.route(stanza, alice)
                profile.disable()
                per_call = pstats.Stats(profile).total_calls / messages  # type: ignore[attr-defined]
            await server.services.stop()
            nursery.cancel_scope.cancel()
        db.dispose()
    return best, per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mam", default="never", choices=("never", "roster", "always"))
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", action="store_true", help="count function calls too")
    args = parser.parse_args()
    best, per_call = trio.run(_run, args.mam, args.messages, args.reps, args.calls)
    calls = f", {per_call:.1f} calls/message" if per_call is not None else ""
    print(
        f"mam={args.mam} messages={args.messages} best_of={args.reps}: "
        f"{best / args.messages * 1e6:.1f} us CPU/message{calls}"
    )


if __name__ == "__main__":
    main()
