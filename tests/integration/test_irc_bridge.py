"""The IRC bridge end to end: a real ngircd, a real ``xmppd serve`` with the component
configured, ``python -m bridges.irc`` as a subprocess, a raw-socket IRC user and a slixmpp
occupant. Faults ngircd cannot produce (closing mid-line, an overlong line, never
answering PING) come from a small scripted server in tests/ircd.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ircd import BridgeProcess, FakeIrcServer, IrcUser, Ngircd
from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess, free_port, make_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
DOMAIN = "irc.localhost"
SECRET = "irc-s3cret"
CHANNEL = "#sax"
BOT = "saxjax"


def bridge_config(tmp: Path, xmppd: XmppdProcess, irc_port: int, **irc: Any) -> dict:
    return {
        "xmpp": {
            "host": "127.0.0.1",
            "port": xmppd.component_port,
            "domain": DOMAIN,
            "secret": SECRET,
            "room": ROOM,
            "nick": "IRC",
            "state_file": str(tmp / "irc-state.json"),
            "self_ping_interval": 2.0,
            "self_ping_timeout": 5.0,
            "reconnect_initial": 0.2,
            "reconnect_max": 1.0,
            "room_rate": 10.0,
        },
        "irc": {
            "servers": [f"127.0.0.1:{irc_port}"],
            "tls": False,
            "nick": BOT,
            "channel": CHANNEL,
            "reconnect_floor": 0.5,
            "reconnect_initial": 0.2,
            "reconnect_max": 1.0,
            "flood_burst": 10,
            "flood_rate": 2.0,
            "max_lines": 30,
            **irc,
        },
        "relay": {"log_level": "DEBUG"},
    }


class Env:
    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.tmp = tmp
        (tmp / "xmppd").mkdir()
        (tmp / "ircd").mkdir()
        self.xmppd = make_server(
            tmp / "xmppd",
            components=[{"domain": DOMAIN, "secret": SECRET, "muc_nicks": ["IRC"]}],
            **overrides,
        )
        self.xmppd.add_user("alice", "secret")
        self.ircd = Ngircd(tmp / "ircd")
        self.bridge: BridgeProcess | None = None

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        self.ircd.stop()
        self.xmppd.stop()

    def logs(self) -> str:
        bridge = self.bridge.log() if self.bridge else ""
        return f"--- bridge\n{bridge[-6000:]}\n--- xmppd\n{self.xmppd.log()[-3000:]}"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.stop()


async def join_room(env: Env, nick: str = "alice", maxstanzas: int = 0) -> Client:
    client = await login(env.xmppd, f"{nick}@localhost/test", plugins=["xep_0045"])
    # xep_0045 takes room presences off the plain "presence" event once joined
    client.add_event_handler("groupchat_presence", client.presences.put_nowait)
    await client.plugin["xep_0045"].join_muc_wait(ROOM, nick, maxstanzas=maxstanzas, timeout=10)
    return client


async def bridge_bodies(client: Client, count: int, timeout: float = 15.0) -> list[str]:
    """The next ``count`` groupchat bodies the bridge's occupant says in the room."""
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        msg = await client.next_message(max(0.01, deadline - time.monotonic()))
        if msg["type"] == "groupchat" and msg["from"].resource == "IRC" and msg["body"]:
            out.append(msg["body"])
    return out


async def quiet_room(client: Client, seconds: float) -> list[str]:
    """Bridge bodies arriving within ``seconds`` (for "nothing more" checks)."""
    try:
        return await bridge_bodies(client, 10**6, seconds)
    except TimeoutError:
        pass
    return []


async def wait_bridge_ready(env: Env, user: IrcUser, alice: Client) -> None:
    """The bot is in the channel (its JOIN seen) and in the room (its presence seen)."""
    await user.expect(lambda p: p[1] == "JOIN" and p[0].startswith(BOT + "!"), 20)
    await alice.next_presence(20, match=lambda p: p["from"].resource == "IRC")


def test_relays_both_ways_with_actions_splitting_and_no_echo(env: Env) -> None:
    env.xmppd.start()
    env.ircd.start()

    async def scenario() -> None:
        alice = await join_room(env)
        bob = IrcUser("bob")
        await bob.connect(env.ircd.port, CHANNEL)
        env.bridge = BridgeProcess(env.tmp, bridge_config(env.tmp, env.xmppd, env.ircd.port))
        env.bridge.start()
        await wait_bridge_ready(env, bob, alice)

        # IRC -> room: exact text, markup characters intact, colours stripped, /me
        bob.send(f'PRIVMSG {CHANNEL} :hello <world> & "friends" </body>')
        bob.send(f"PRIVMSG {CHANNEL} :\x0304,01red\x03 \x02bold\x02 \x1ditalic\x1d\x0f done")
        bob.send(f"PRIVMSG {CHANNEL} :\x01ACTION waves\x01")
        assert await bridge_bodies(alice, 3) == [
            '<bob> hello <world> & "friends" </body>',
            "<bob> red bold italic done",
            "/me bob waves",
        ]

        # room -> IRC
        alice.send_message(mto=ROOM, mbody="hi <b>&amp;</b> & < é", mtype="groupchat")
        alice.send_message(mto=ROOM, mbody="/me dances", mtype="groupchat")
        got = await bob.privmsgs(2)
        assert got == ["<alice> hi <b>&amp;</b> & < é", "\x01ACTION alice dances\x01"]

        # 5,000 characters with newlines: split at word boundaries, each line <= 512
        words = [f"w{i}<&>é" for i in range(900)]
        text = " ".join(words)[:5000]
        text = text[:1200] + "\n" + text[1200:3000] + "\n\n" + text[3000:]
        assert len(text) == 5003
        started = time.monotonic()
        alice.send_message(mto=ROOM, mbody=text, mtype="groupchat")
        lines: list[str] = []
        raw_lengths: list[int] = []
        while True:
            parts = await bob.expect(lambda p: p[1] == "PRIVMSG", 30)
            raw_lengths.append(len((":" + parts[0] + " PRIVMSG #sax :" + parts[-1]).encode()) + 2)
            assert parts[-1].startswith("<alice> ")
            lines.append(parts[-1][len("<alice> ") :])
            if text.endswith(lines[-1]):
                break
        elapsed = time.monotonic() - started
        assert max(raw_lengths) <= 512
        assert " ".join(lines).split() == text.split()
        assert len(lines) >= 13
        # flood control: a burst of 10, then 2 lines per second
        assert elapsed >= (len(lines) - 10) / 2.0 * 0.8

        # no loops: neither side hears its own words back
        await asyncio.sleep(1.0)
        assert await quiet_room(alice, 0.5) == []
        assert [line for line in bob.drain() if " PRIVMSG " in line] == []
        await bob.close()
        await alice.close()

    try:
        run(scenario, timeout=90)
    except BaseException:
        print(env.logs())
        raise


def test_survives_ircd_restart_and_xmppd_restart_without_loss_or_duplicates(env: Env) -> None:
    env.xmppd.start()
    env.ircd.start()

    async def scenario() -> None:
        alice = await join_room(env)
        bob = IrcUser("bob")
        await bob.connect(env.ircd.port, CHANNEL)
        # the reconnect floor (ghost-reaping window) keeps the bot away long enough for
        # bob to be back in the channel first after the ngircd restart
        config = bridge_config(env.tmp, env.xmppd, env.ircd.port, reconnect_floor=3.0)
        env.bridge = BridgeProcess(env.tmp, config)
        env.bridge.start()
        await wait_bridge_ready(env, bob, alice)
        alice.send_message(mto=ROOM, mbody="before restarts", mtype="groupchat")
        assert await bob.privmsgs(1) == ["<alice> before restarts"]
        bob.send(f"PRIVMSG {CHANNEL} :irc before restarts")
        assert await bridge_bodies(alice, 1) == ["<bob> irc before restarts"]

        # --- ngircd restart: room messages said meanwhile are queued, then delivered once
        await bob.close()
        env.ircd.stop()
        alice.send_message(mto=ROOM, mbody="said while IRC was down", mtype="groupchat")
        await asyncio.sleep(0.5)
        env.ircd.start()
        bob = IrcUser("bob")
        await bob.connect(env.ircd.port, CHANNEL)
        await bob.expect(lambda p: p[1] == "JOIN" and p[0].startswith(BOT + "!"), 30)
        assert await bob.privmsgs(1) == ["<alice> said while IRC was down"]
        bob.send(f"PRIVMSG {CHANNEL} :irc after its restart")
        assert await bridge_bodies(alice, 1) == ["<bob> irc after its restart"]

        # --- xmppd restart: IRC said meanwhile reaches the room once; nothing goes back
        await alice.close()
        env.xmppd.stop()
        bob.send(f"PRIVMSG {CHANNEL} :said while xmppd was down")
        await asyncio.sleep(0.5)
        env.xmppd.start()
        alice = await join_room(env, maxstanzas=20)
        got: list[str] = []
        deadline = time.monotonic() + 20
        while "<bob> said while xmppd was down" not in got and time.monotonic() < deadline:
            try:
                got += await bridge_bodies(alice, 1, max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
        got += await quiet_room(alice, 2.0)
        assert got.count("<bob> said while xmppd was down") == 1, got
        alice.send_message(mto=ROOM, mbody="after xmppd restart", mtype="groupchat")
        # the rejoin's history (everything above again) must not be relayed a second time
        assert await bob.privmsgs(1) == ["<alice> after xmppd restart"]
        await asyncio.sleep(1.0)
        assert [line for line in bob.drain() if " PRIVMSG " in line] == []

        # --- bridge restart: the state file keeps the rejoin from repeating anything
        env.bridge.stop()
        alice.send_message(mto=ROOM, mbody="while the bridge was down", mtype="groupchat")
        env.bridge.start()
        assert await bob.privmsgs(1, 30) == ["<alice> while the bridge was down"]
        await asyncio.sleep(1.5)
        assert [line for line in bob.drain() if " PRIVMSG " in line] == []
        await bob.close()
        await alice.close()

    try:
        run(scenario, timeout=150)
    except BaseException:
        print(env.logs())
        print("--- ngircd\n" + env.ircd.log()[-2000:])
        raise


def welcome(conn: socket.socket, lines: Any) -> None:
    """Answer registration like a minimal server and echo the JOIN."""
    nick = "saxjax"
    for line in lines:
        if line.startswith("NICK "):
            nick = line.split()[1]
        if line.startswith("USER "):
            break
    conn.sendall(f":fake 001 {nick} :Welcome\r\n".encode())
    for line in lines:
        if line.startswith("JOIN "):
            conn.sendall(f":{nick}!u@h JOIN {CHANNEL}\r\n".encode())
            return


def test_faulty_irc_server_mid_line_close_overlong_line_and_no_pong(env: Env) -> None:
    long_text = "L" * 600  # a PRIVMSG line well over 512 bytes: still readable, relayed
    gone = threading.Event()

    def script(index: int, conn: socket.socket, lines: Any) -> None:
        welcome(conn, lines)
        if index == 0:
            conn.sendall(f":bob!b@h PRIVMSG {CHANNEL} :{long_text}\r\n".encode())
            conn.sendall(b":bob!b@h PRIVMSG #sax :" + b"x" * 100_000 + b"\r\n")
            conn.sendall(f":bob!b@h PRIVMSG {CHANNEL} :after the flood line\r\n".encode())
            time.sleep(0.5)
            conn.sendall(f":bob!b@h PRIVMSG {CHANNEL} :half a li".encode())
            return  # closes mid-line
        if index == 1:
            for _line in lines:  # swallows every PING: the lag check must give up
                if gone.is_set():
                    return
            return
        conn.sendall(f":bob!b@h PRIVMSG {CHANNEL} :third connection works\r\n".encode())
        for _line in lines:
            pass

    fake = FakeIrcServer(script)
    env.xmppd.start()

    async def scenario() -> None:
        alice = await join_room(env)
        config = bridge_config(env.tmp, env.xmppd, fake.port, ping_interval=1.0, ping_timeout=1.5)
        env.bridge = BridgeProcess(env.tmp, config)
        env.bridge.start()
        got = await bridge_bodies(alice, 2, 20)
        assert got == [f"<bob> {long_text}", "<bob> after the flood line"]
        assert await bridge_bodies(alice, 1, 30) == ["<bob> third connection works"]
        assert fake.connections() == 3
        # the second connection saw our PING go unanswered, then we left
        assert any(line.startswith("PING ") for line in fake.received[1])
        # the fragment of the mid-line close never became a message
        assert await quiet_room(alice, 1.0) == []
        await alice.close()

    try:
        run(scenario, timeout=90)
    except BaseException:
        print(env.logs())
        raise
    finally:
        gone.set()
        fake.close()
    assert fake.errors == []
    log = env.bridge.log() if env.bridge else ""
    assert "event=irc_line_too_long" in log
    assert "closed mid-line" in log
    assert "no PONG" in log or "lag check failed" in log


async def until_body(client: Client, wanted: str, timeout: float = 15.0) -> list[str]:
    """Bridge bodies up to and including ``wanted``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while wanted not in got:
        try:
            got += await bridge_bodies(client, 1, max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            raise AssertionError(f"{wanted!r} never came; got {got!r}") from None
    return got


def test_nick_collision_reclaim_kick_rejoin_and_joins_parts(tmp_path: Path) -> None:
    env = Env(tmp_path, muc={"admins": ["alice@localhost"]})
    env.xmppd.add_user("carol", "secret")
    env.xmppd.start()
    env.ircd.start()

    async def scenario() -> None:
        squatter = IrcUser(BOT)  # holds the bot's nick: 433 -> fallback
        await squatter.connect(env.ircd.port, CHANNEL)
        alice = await join_room(env)
        bob = IrcUser("bob")
        await bob.connect(env.ircd.port, CHANNEL)
        config = bridge_config(
            env.tmp,
            env.xmppd,
            env.ircd.port,
            fallback_nicks=["saxbridge"],
            nick_reclaim_interval=1.0,
        )
        config["relay"]["joins_parts"] = True
        config["xmpp"]["kick_rejoin_delay"] = 0.5
        env.bridge = BridgeProcess(env.tmp, config)
        env.bridge.start()
        await bob.expect(lambda p: p[1] == "JOIN" and p[0].startswith("saxbridge!"), 20)
        await alice.next_presence(20, match=lambda p: p["from"].resource == "IRC")
        bob.send(f"PRIVMSG {CHANNEL} :hi from bob")
        assert await until_body(alice, "<bob> hi from bob") == ["<bob> hi from bob"]

        # the squatter leaves: relayed as a quit, and the bot takes its nick back
        await squatter.close()
        assert '*** saxjax quit ("bye")' in await until_body(alice, '*** saxjax quit ("bye")')
        parts = await bob.expect(lambda p: p[1] == "NICK", 10)
        assert parts[0].startswith("saxbridge!") and parts[-1] == BOT

        # XMPP joins and parts reach IRC
        carol = await join_room(env, "carol")
        assert (await bob.privmsgs(1)) == ["*** carol joined the room"]
        await carol.close()
        assert (await bob.privmsgs(1)) == ["*** carol left the room"]

        # a moderator kicks the bot (307): it rejoins after kick_rejoin_delay, and what
        # IRC said in between arrives exactly once
        await alice.plugin["xep_0045"].set_role(ROOM, "IRC", "none")
        bob.send(f"PRIVMSG {CHANNEL} :said during the kick")
        await alice.next_presence(
            20, match=lambda p: p["from"].resource == "IRC" and p["type"] != "unavailable"
        )
        got = await until_body(alice, "<bob> said during the kick", 20)
        got += await quiet_room(alice, 1.5)
        assert got.count("<bob> said during the kick") == 1, got

        # IRC joins reach the room
        dave = IrcUser("dave")
        await dave.connect(env.ircd.port, CHANNEL)
        assert "*** dave joined #sax" in await until_body(alice, "*** dave joined #sax")
        for user in (dave, bob):
            await user.close()
        await alice.close()

    try:
        run(scenario, timeout=90)
    except BaseException:
        print(env.logs())
        raise
    finally:
        env.stop()


def test_tls_to_irc_and_server_rotation(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.ircd.tls = True
    env.xmppd.start()
    env.ircd.start()
    dead = free_port()  # nothing listens here: the bridge must move on to the next server

    async def scenario() -> None:
        alice = await join_room(env)
        bob = IrcUser("bob")
        await bob.connect(env.ircd.port, CHANNEL)  # bob is on the plain port
        config = bridge_config(env.tmp, env.xmppd, env.ircd.tls_port)
        config["irc"].update(
            servers=[f"127.0.0.1:{dead}", f"localhost:{env.ircd.tls_port}"],
            tls=True,
            tls_verify=False,  # self-signed test certificate
        )
        env.bridge = BridgeProcess(env.tmp, config)
        env.bridge.start()
        await wait_bridge_ready(env, bob, alice)
        bob.send(f"PRIVMSG {CHANNEL} :over tls é")
        assert await until_body(alice, "<bob> over tls é") == ["<bob> over tls é"]
        alice.send_message(mto=ROOM, mbody="back over tls", mtype="groupchat")
        assert await bob.privmsgs(1) == ["<alice> back over tls"]
        await bob.close()
        await alice.close()

    try:
        run(scenario, timeout=90)
    except BaseException:
        print(env.logs())
        raise
    finally:
        env.stop()
    log = env.bridge.log() if env.bridge else ""
    assert f"event=irc_connect_failed host=127.0.0.1 port={dead}" in log
    assert "tls=True" in log
    assert "Connection" in env.ircd.log() and "TLS" in env.ircd.log()
