"""Event-loop cost of the periodic phpBB re-check with 5,000 connected members.

Builds a throwaway phpBB 3.3 forum on the local MariaDB (or PostgreSQL) with N members,
each with a forum session, plus a ban list (user, address and e-mail bans, exact and
wildcard); then, in one trio process, a real :class:`~xmppd.router.Router` holding N
bound sessions (80 % logged in with their forum session id, 20 % with a password, each
from its own address) and the real :class:`~xmppd.auth.phpbb.PhpbbAuthenticator` and
:class:`~xmppd.auth.phpbb_recheck.Rechecker`. It runs rounds back to back and measures,
per round:

- event-loop time: the time trio spent running task steps during the round (a
  ``trio.abc.Instrument``), i.e. listing the sessions, starting the worker, resuming
  after it and applying the verdicts — what the budget (< 50 ms) is about;
- worker time: wall time of the queries and decisions in the worker thread.

    .venv/bin/python bench/phpbb_recheck.py                 # 5,000 members, 20 rounds, MariaDB
    .venv/bin/python bench/phpbb_recheck.py --db postgresql --members 10000
    .venv/bin/python bench/phpbb_recheck.py --chunk 5000     # compare IN-list sizes

Needs the test extras (``./test`` once) and the databases the integration tests use.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.phpbb.fixtures import PhpbbDatabase, phpbb_database  # noqa: E402
from xmppd.auth import phpbb_recheck  # noqa: E402
from xmppd.auth.phpbb import PhpbbAuthenticator  # noqa: E402
from xmppd.auth.phpbb_recheck import Rechecker, RoundStats  # noqa: E402
from xmppd.auth.phpbb_sessions import ForumLogin  # noqa: E402
from xmppd.config import PhpbbConfig  # noqa: E402
from xmppd.jid import JID  # noqa: E402
from xmppd.router import Router  # noqa: E402
from xmppd.session import Session  # noqa: E402

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class LoopMeter(trio.abc.Instrument):
    """Sums the time trio spends running task steps (the event loop's own work)."""

    def __init__(self) -> None:
        self.busy = 0.0
        self._started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.busy += time.perf_counter() - self._started


class NullOutbox:
    def __init__(self) -> None:
        self.closed: tuple[str | None, str | None] | None = None

    def enqueue(self, data: bytes) -> bool:
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        self.closed = (condition, text)


def address(n: int) -> str:
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def fill_forum(db: PhpbbDatabase, members: int, now: int) -> list[tuple[int, str]]:
    """Members with sessions, and a ban list that matches none of them."""
    made = db.add_members(members, session_time=now, browser=BROWSER)
    for n in range(200):
        db.add_ban(ip=f"203.0.113.{n}")
    for n in range(20):
        db.add_ban(ip=f"198.51.{n}.*")
    for n in range(50):
        db.add_ban(email=f"spammer{n}@example.net")
    for n in range(5):
        db.add_ban(email=f"*@spam{n}.example")
    for n in range(100):
        db.add_ban(user_id=900_000 + n)  # long-gone spam accounts
    return made


def sessions(router: Router, made: list[tuple[int, str]]) -> list[Session]:
    out = []
    for n, (uid, sid) in enumerate(made):
        session = Session(JID(f"member{n}", "localhost", "web"), NullOutbox())
        if n % 5 == 4:
            session.login = ForumLogin(uid, "password", address(n))
        else:
            session.login = ForumLogin(uid, "sid", address(n), sid=sid, browser=BROWSER)
        router.bind(session)
        out.append(session)
    return out


async def measure(
    db: PhpbbDatabase, made: list[tuple[int, str]], rounds: int, meter: LoopMeter
) -> dict[str, Any]:
    auth = PhpbbAuthenticator(PhpbbConfig(url=db.url, table_prefix=db.prefix), "localhost")
    router = Router("localhost", auth)
    bound = sessions(router, made)
    rechecker = Rechecker(router, auth)
    loop_ms: list[float] = []
    own_ms: list[float] = []
    worker_ms: list[float] = []

    async def one() -> RoundStats:
        await trio.lowlevel.checkpoint()  # what ran before this point is not the round's
        before = meter.busy
        stats = await rechecker.round()
        assert stats is not None, "the round was skipped (forum database error)"
        loop_ms.append((meter.busy - before) * 1000)
        own_ms.append(stats.loop_seconds * 1000)
        worker_ms.append(stats.worker_seconds * 1000)
        return stats

    try:
        for _ in range(2):  # warm-up: pool connections, forum settings cache
            await one()
        loop_ms.clear()
        own_ms.clear()
        worker_ms.clear()
        for _ in range(rounds):
            stats = await one()
            assert stats.ended == 0 and stats.logins == len(made), stats
        steady = (list(loop_ms), list(own_ms), list(worker_ms))
        # one round that ends 1 % of the members (banned meanwhile)
        victims = made[::100]

        def ban_them() -> None:
            for uid, _ in victims:
                db.add_ban(user_id=uid)

        await trio.to_thread.run_sync(ban_them)
        stats = await one()
        ended = sum(1 for s in bound if s.revoked is not None)
        return {
            "steady": steady,
            "ban_round": (loop_ms[-1], own_ms[-1], worker_ms[-1], stats.ended, ended),
        }
    finally:
        await auth.aclose()


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(values):.1f} ms, p90 {p90:.1f} ms, max {max(values):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("mariadb", "postgresql"), default="mariadb")
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=phpbb_recheck.CHUNK)
    args = parser.parse_args()
    phpbb_recheck.CHUNK = args.chunk
    now = int(time.time())
    with phpbb_database(args.db) as db:
        made = fill_forum(db, args.members, now)
        meter = LoopMeter()
        result = trio.run(measure, db, made, args.rounds, meter, instruments=[meter])
    loop, own, worker = result["steady"]
    print(
        f"{args.members} connected members, {args.db}, IN lists of {args.chunk}, "
        f"{args.rounds} rounds:"
    )
    print(f"  event-loop time per round: {summary(loop)}")
    print(f"    of which listing sessions + applying verdicts: {summary(own)}")
    print(f"  worker (queries + decisions) per round: {summary(worker)}")
    b_loop, b_own, b_worker, b_ended, revoked = result["ban_round"]
    print(
        f"  a round ending {b_ended} banned members ({revoked} sessions revoked): "
        f"event loop {b_loop:.1f} ms (listing + applying {b_own:.1f} ms), worker {b_worker:.1f} ms"
    )


if __name__ == "__main__":
    main()
