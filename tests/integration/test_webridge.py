"""webridge end to end: datagrams -> a real bridge process -> a real xmppd -> a slixmpp occupant."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import PresenceError

from tests.slix import login, run
from tests.webridge_process import (
    DOMAIN,
    DOMAIN2,
    NICK,
    NICK2,
    ROOM,
    URL,
    WebridgeProcess,
    bodies_from_sax,
    occupant,
    quiet_for,
    webridge_server,
)
from tests.xmppd_process import XmppdProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[XmppdProcess, WebridgeProcess]]:
    tmp: Path = tmp_path_factory.mktemp("webridge")
    server = webridge_server(tmp)
    server.start()
    bridge = WebridgeProcess(tmp, server)
    try:
        bridge.start()
        yield server, bridge
    finally:
        bridge.close()
        server.stop()


def outcome(scenario: Any, server: XmppdProcess, bridge: WebridgeProcess) -> list[str]:
    """Run ``scenario``; on a timeout fail with both logs' tails (what went missing)."""
    try:
        return run(scenario, timeout=60)
    except TimeoutError as exc:
        pytest.fail(f"{exc!r}\n--- webridge:\n{bridge.log()[-4000:]}\n--- xmppd:\n"
                    f"{server.log()[-4000:]}")  # fmt: skip


def test_events_arrive_rendered_in_order(pair: tuple[XmppdProcess, WebridgeProcess]) -> None:
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    events: list[tuple[bytes | str, str]] = [
        (
            {"type": "reply", "who": "alice", "forum": "Calculators", "title": f"How do I … {tag}",
             "url": URL},
            f"alice replied to [Calculators] How do I … {tag}: {URL}",
        ),
        (
            {"type": "new_topic", "who": "bob", "forum": "Q&amp;A", "title": f"TI-84 &lt;3 {tag}",
             "url": URL},
            f"bob started a new topic [Q&A] TI-84 <3 {tag}: {URL}",
        ),
        (
            {"type": "edit", "who": "carol", "title": f"Release {tag}", "url": URL},
            f"carol edited a post in Release {tag}: {URL}",
        ),
        ({"type": "new_member", "who": f"dave{tag}"}, f"dave{tag} just registered. Welcome!"),
        (
            {"type": "announcement", "title": f"Maintenance {tag}"},
            f"Announcement: Maintenance {tag}",
        ),
        ({"type": "say", "who": "erin", "text": f"hi <all> & {tag}"}, f"erin: hi <all> & {tag}"),
        (f"plain Übung {tag}", f"plain Übung {tag}"),
    ]  # fmt: skip

    async def scenario() -> list[str]:
        alice = await occupant(server, "order")
        for event, _ in events:
            bridge.send(json.dumps(event) if isinstance(event, dict) else event)
        got = await bodies_from_sax(alice, len(events), tag)
        await alice.close()
        return got

    assert run(scenario) == [text for _, text in events]


def send_big(path: Path, size: int) -> int:
    """Send a ``size``-byte datagram if the kernel lets us; the size actually sent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * size)
        sock.settimeout(5)
        sock.connect(str(path))
        while True:
            try:
                sock.send(b"{" + b"x" * (size - 1))
                return size
            except OSError as exc:  # the kernel's own datagram limit (net.core.wmem_max)
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS) or size <= 70_000:
                    raise
                size = max(70_000, size // 2)


def test_bad_datagrams_are_dropped_and_good_ones_still_arrive(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    before = bridge.log().count("event=datagram_dropped")

    async def scenario() -> tuple[list[str], int]:
        alice = await occupant(server, "bad")
        bridge.send(f"first {tag}")
        bridge.send(b"\xff\xfe not utf-8 " + tag.encode())
        bridge.send('{"type": "reply", "who": "x", ' + tag)  # not JSON
        bridge.send(json.dumps({"type": "self_destruct", "who": tag}))  # unknown type
        bridge.send(json.dumps({"type": "reply", "who": tag}))  # missing fields
        bridge.send(json.dumps([tag]))  # not an object
        sent = send_big(bridge.socket_path, 1 << 20)  # 1 MiB (or the kernel's maximum)
        bridge.send(f"last {tag}")
        got = await bodies_from_sax(alice, 2, tag)
        got += await quiet_for(alice, 0.5, tag)
        await alice.close()
        return got, sent

    got, sent = run(scenario)
    assert got == [f"first {tag}", f"last {tag}"]
    assert sent >= 65536
    log = bridge.log()
    assert log.count("event=datagram_dropped") - before == 6
    for reason in ("not_utf8", "not_json", "unknown_type", "missing_fields", "not_object"):
        assert f"event=datagram_dropped reason={reason}" in log
    assert f"event=datagram_dropped reason=oversized bytes={min(sent, 65536)}" in log
    assert bridge.proc is not None and bridge.proc.poll() is None


def test_xmppd_restart_events_delivered_once_in_order(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    """Events sent just before, during and after an xmppd restart: each arrives once."""
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    n = 30
    texts = [f"event {i:02d} {tag}" for i in range(n)]
    joins = bridge.log().count("event=room_joined")
    for text in texts[:5]:
        bridge.send(text)
    server.stop()  # SIGTERM while those may still be on their way
    for text in texts[5:25]:  # xmppd is down: the bridge queues them
        bridge.send(text)
    server.start()
    bridge.wait_log("event=room_joined", timeout=30, count=joins + 1)
    for text in texts[25:]:
        bridge.send(text)

    async def scenario() -> list[str]:
        # join with history: the bot may have posted some before we got in
        alice = await occupant(server, "restart", history=100)
        got = await bodies_from_sax(alice, n, tag, timeout=30)
        got += await quiet_for(alice, 1.0, tag)
        await alice.close()
        return got

    assert outcome(scenario, server, bridge) == texts


def test_queue_overflow_drops_oldest_and_logs_count(
    pair: tuple[XmppdProcess, WebridgeProcess], tmp_path: Path
) -> None:
    server = pair[0]
    settings = {"xmpp": {"domain": DOMAIN2, "nick": NICK2}, "messages": {"queue_size": 5}}
    with WebridgeProcess(tmp_path, server, settings=settings) as bridge:
        bridge.start()
        tag = uuid.uuid4().hex[:6]
        joins = bridge.log().count("event=room_joined")
        server.stop()
        texts = [f"q{i} {tag}" for i in range(8)]
        for text in texts:
            bridge.send(text)
        bridge.wait_log("event=queue_overflow dropped=")
        server.start()
        bridge.wait_log("event=room_joined", timeout=30, count=joins + 1)

        async def scenario() -> list[str]:
            alice = await occupant(server, "overflow", history=50)
            got = await bodies_from_sax(alice, 5, tag, nick=NICK2)
            got += await quiet_for(alice, 1.0, tag, nick=NICK2)
            await alice.close()
            return got

        assert outcome(scenario, server, bridge) == texts[3:]
        assert "total_dropped=3" in bridge.log()


def test_say_cli_posts_into_the_room(pair: tuple[XmppdProcess, WebridgeProcess]) -> None:
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRIDGE_")}
    env["WEBRIDGE_SOCKET_PATH"] = str(bridge.socket_path)

    async def scenario() -> list[str]:
        alice = await occupant(server, "cli")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bridges.webridge", "say", "Tom", "&amp;", f"Jerry {tag}"],
            cwd=ROOT,
            env=env,
            timeout=30,
        )
        assert done.returncode == 0
        got = await bodies_from_sax(alice, 1, tag)
        await alice.close()
        return got

    assert run(scenario) == [f"Tom & Jerry {tag}"]


def test_events_written_to_a_dying_xmppd_are_resent_once(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    """xmppd frozen (SIGSTOP) while the bot writes a burst, then killed (SIGKILL): the
    socket took the bytes but nothing processed them. The bot finds none of them in the
    room's history after the rejoin and sends them again: each arrives once, in order."""
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    texts = [f"burst {i:02d} {tag}" for i in range(25)]  # more than the room's burst
    joins = bridge.log().count("event=room_joined")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        for text in texts:
            bridge.send(text)
        time.sleep(0.5)  # the bot writes them into the frozen server's socket
    finally:
        server.proc.kill()
        server.proc.wait()
        server.proc = None
    server.start()
    bridge.wait_log("event=room_joined", timeout=30, count=joins + 1)

    async def scenario() -> list[str]:
        alice = await occupant(server, "killed", history=100)
        got = await bodies_from_sax(alice, len(texts), tag, timeout=30)
        got += await quiet_for(alice, 1.0, tag)
        await alice.close()
        return got

    assert outcome(scenario, server, bridge) == texts
    resent = re.findall(r"event=room_rejoined confirmed=0 resent=(\d+)", bridge.log())
    assert resent and int(resent[-1]) >= 10  # at least the bot's first burst was re-sent
    assert "event=message_rejected" not in bridge.log()  # paced: the room refused nothing


def test_bridge_killed_and_restarted_replaces_its_stale_socket(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    server, bridge = pair
    assert bridge.proc is not None
    bridge.proc.kill()  # no clean-up: the socket file stays behind
    bridge.proc.wait()
    bridge.proc = None
    assert bridge.socket_path.is_socket()
    bridge.start()
    assert "event=stale_socket_replaced" in bridge.log()
    tag = uuid.uuid4().hex[:6]

    async def scenario() -> list[str]:
        alice = await occupant(server, "again")
        bridge.send(f"back {tag}")
        got = await bodies_from_sax(alice, 1, tag)
        await alice.close()
        return got

    assert run(scenario) == [f"back {tag}"]


def test_nick_taken_events_wait_until_the_bot_gets_in(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    """Someone sits on the bot's nick while it (re)starts: the join is refused, events
    wait in the queue, and once the nick is free the bot joins and posts them in order."""
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    texts = [f"waiting {i} {tag}" for i in range(3)]

    async def scenario() -> list[str]:
        squatter = await login(server, "alice@localhost/squat", plugins=["xep_0045"])
        assert bridge.proc is not None
        bridge.proc.kill()  # its occupant leaves the room with the connection
        bridge.proc.wait()
        bridge.proc = None
        deadline = time.monotonic() + 10
        while True:  # until the room has dropped the bot's occupant
            try:
                await squatter.plugin["xep_0045"].join_muc_wait(ROOM, NICK, maxstanzas=0, timeout=5)
                break
            except PresenceError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        watcher = await occupant(server, "watch")
        failed = bridge.log().count("event=room_join_failed")
        await asyncio.to_thread(bridge.start, wait_joined=False)
        await asyncio.to_thread(bridge.wait_log, "event=room_join_failed", 20, failed + 1)
        refusals = [ln for ln in bridge.log().splitlines() if "event=room_join_failed" in ln]
        assert "condition=conflict" in refusals[-1]
        for text in texts:
            bridge.send(text)
        assert await quiet_for(watcher, 0.5, tag) == []  # nothing while the bot is out
        squatter.plugin["xep_0045"].leave_muc(ROOM, NICK)
        got = await bodies_from_sax(watcher, len(texts), tag, timeout=20)
        await squatter.close()
        await watcher.close()
        return got

    assert outcome(scenario, server, bridge) == texts


def test_registered_nick_keeps_the_bots_name_for_it(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    """`xmppd register-nick SAX sax@webridge.localhost` (README): nobody else can take it."""
    server, bridge = pair
    done = subprocess.run(
        [sys.executable, "-m", "xmppd", "--config", str(server.config_path), "register-nick",
         NICK, f"sax@{DOMAIN}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    async def scenario() -> str:
        mallory = await login(server, "alice@localhost/mallory", plugins=["xep_0045"])
        deadline = time.monotonic() + 10
        while True:  # the running server reloads the registry (muc.nick_reload_interval)
            try:
                await mallory.plugin["xep_0045"].join_muc_wait(ROOM, NICK, maxstanzas=0, timeout=5)
            except PresenceError as exc:
                await mallory.close()
                return str(exc.presence["error"]["condition"])
            mallory.plugin["xep_0045"].leave_muc(ROOM, NICK)
            if time.monotonic() > deadline:
                raise AssertionError("the nick was never reserved")
            await asyncio.sleep(0.2)

    bridge.stop()  # the bot is out of the room: only the registration protects its nick
    assert run(scenario) == "conflict"
    failed = bridge.log().count("event=room_join_failed")
    bridge.start()  # the registered owner joins under it (start() waits for room_joined)
    assert bridge.log().count("event=room_join_failed") == failed


def test_second_bridge_on_the_same_socket_refuses_to_start(
    pair: tuple[XmppdProcess, WebridgeProcess],
) -> None:
    _server, bridge = pair
    inode = bridge.socket_path.stat().st_ino
    done = subprocess.run(
        [sys.executable, "-m", "bridges.webridge", "run", "--config", str(bridge.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "event=socket_unusable" in done.stderr and "already reading" in done.stderr
    assert bridge.socket_path.stat().st_ino == inode  # the running bridge keeps its socket


def test_clean_stop_removes_the_socket(pair: tuple[XmppdProcess, WebridgeProcess]) -> None:
    """(Last in this module: it leaves the bridge stopped.)"""
    _server, bridge = pair
    assert bridge.stop() == 0
    assert not bridge.socket_path.exists()
    assert "event=webridge_stopping signal=SIGTERM" in bridge.log()
