"""Durable one-to-one messages under ``kill -9`` (issue 15 part 2), SQLite and PostgreSQL.

A message to a resource whose XEP-0198 session is detached waits in the server's memory
for a ``<resume/>``. When the server dies with SIGKILL, that memory is gone; what saves
the message is the recipient's archive (XEP-0313): with ``mam.durable`` the sender's
``<a/>`` counts a message only once its archive rows are committed. So: every message
the sender saw acknowledged is in the recipient's archive after the restart, exactly
once. The archive's periodic flush is set to a minute here: without the commit before
the ack, the rows of the acknowledged messages are still queued at the kill, and this
test fails.
"""

from __future__ import annotations

import collections
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.db_fixtures import Kind, temporary_database
from tests.raw_client import RawClient
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, make_server

pytestmark = pytest.mark.integration

ROUNDS = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[XmppdProcess]:
    kind: Kind = request.param
    with temporary_database(kind) as url:
        overrides: dict[str, Any] = {
            "mam": {"flush_interval": 60.0, "batch_size": 5000},
            "sm": {"resume_timeout": 300},
        }
        if kind != "sqlite":
            overrides["database"] = {"url": url}
        srv = make_server(tmp_path, **overrides)
        for user in ("alice", "bob"):
            srv.add_user(user, "secret")
        try:
            yield srv
        finally:
            srv.stop()


def _enable(client: RawClient, resume: bool) -> None:
    flag = b" resume='true'" if resume else b""
    client.send(b"<enable xmlns='urn:xmpp:sm:3'" + flag + b"/>")
    client.read_until(b"<enabled")
    client.read_until(b"/>")
    client.buffer = b""


def _detach_bob(server: XmppdProcess) -> None:
    """bob's phone enables resumption, then its connection drops: bob is detached."""
    offset = len(server.log())
    bob = RawClient(server.port)
    bob.login("bob", "secret", resource="phone")
    _enable(bob, resume=True)
    bob.send(b"<presence/>")
    time.sleep(0.2)
    bob.sock.close()
    server.wait_for_log(r"event=session_detached jid=bob@localhost/phone", offset, 10)


def _acked(client: RawClient) -> int:
    """The newest ``<a h=…/>`` in what was read so far (-1: none yet)."""
    found = re.findall(rb"<a xmlns=['\"]urn:xmpp:sm:3['\"] h=['\"](\d+)['\"]", client.buffer)
    return int(found[-1]) if found else -1


def _round(server: XmppdProcess, tag: str, kill_after: float) -> tuple[list[str], int]:
    """alice sends to the detached bob, asking for an ack after every few messages,
    until SIGKILL; (bodies sent in order, how many of them the server acknowledged)."""
    server.start()
    _detach_bob(server)
    alice = RawClient(server.port)
    alice.login("alice", "secret", resource="desk")
    _enable(alice, resume=False)
    sent: list[str] = []
    deadline = time.monotonic() + kill_after
    try:
        while time.monotonic() < deadline:
            for _ in range(3):
                body = f"{tag}-{len(sent)}"
                alice.send(
                    f"<message to='bob@localhost/phone' type='chat' id='{body}'>"
                    f"<body>{body}</body></message>".encode()
                )
                sent.append(body)
            alice.send(b"<r xmlns='urn:xmpp:sm:3'/>")
            alice.read_until(f'h="{len(sent)}"'.encode(), timeout=10)
        alice.send(b"<r xmlns='urn:xmpp:sm:3'/>")  # one more in flight at the kill
    finally:
        assert server.proc is not None
        server.proc.kill()  # SIGKILL: no shutdown, no final flush
        server.proc.wait()
        server.proc = None
    try:
        alice.read_to_close(timeout=2)
    except (TimeoutError, OSError):
        pass
    alice.sock.close()
    return sent, _acked(alice)


async def _archive(server: XmppdProcess) -> list[str]:
    bob = await login(server, "bob@localhost/laptop", plugins=["xep_0313", "xep_0059"])
    bodies = [
        m["mam_result"]["forwarded"]["stanza"]["body"]
        async for m in bob.plugin["xep_0313"].iterate(rsm={"max": 250})
    ]
    await bob.close()
    return bodies


def test_every_acknowledged_message_to_a_detached_session_survives_kill_9(
    server: XmppdProcess,
) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    acked_all: list[str] = []
    sent_all: list[str] = []
    for r in range(ROUNDS):
        sent, acked = _round(server, f"r{r}", rng.uniform(0.5, 1.5))
        assert acked > 0, f"round {r}: nothing acknowledged (seed {seed})"
        acked_all += sent[:acked]
        sent_all += sent
    server.start()
    archived = run(lambda: _archive(server), 60)
    counts = collections.Counter(archived)
    missing = [b for b in acked_all if b not in counts]
    dupes = sorted(b for b, n in counts.items() if n > 1)
    assert not missing, f"archive lost {len(missing)} acknowledged: {missing[:5]} (seed {seed})"
    assert not dupes, f"archive has duplicates: {dupes[:5]} (seed {seed})"
    assert set(counts) <= set(sent_all)
    # in the order they were sent
    assert [b for b in archived if b in set(acked_all)] == acked_all
    print(f"seed={seed} sent={len(sent_all)} acked={len(acked_all)} archived={len(archived)}")
