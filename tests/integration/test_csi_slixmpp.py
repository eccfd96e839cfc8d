"""XEP-0352 client state indication against a real ``xmppd serve``, with slixmpp's
xep_0352 plugin over real sockets: an inactive client gets messages (and mentions) at
once, not presence churn or chat states; going active brings the latest presence of
each contact and the held chat states, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.slix import Client, befriend, login, run
from tests.ws_client import CLIENT, WsXmpp, q
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(tmp_path, users=("alice", "bob", "carol"), csi={"max_held": 100}) as srv:
        yield srv


async def _sync(*clients: Client) -> None:
    """A ping round trip each: the server handled everything they sent before it."""
    for client in clients:
        await client.plugin["xep_0199"].send_ping("localhost", timeout=5)


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def _settle(seconds: float = 0.7) -> None:
    await asyncio.sleep(seconds)


def _stanza_log(client: Client) -> list[str]:
    """What ``client`` receives, in order, as "kind from detail" strings."""
    seen: list[str] = []

    def presence(p: Any) -> None:
        if p["type"] in ("available", "away", "unavailable") and p["from"].bare != "localhost":
            seen.append(f"presence {p['from']} {p['status']}")

    def message(m: Any) -> None:
        if m["body"]:
            seen.append(f"body {m['from']} {m['body']}")

    def composing(m: Any) -> None:
        seen.append(f"composing {m['from']}")

    client.add_event_handler("presence", presence)
    client.add_event_handler("message", message)  # slixmpp: only messages with a body
    client.add_event_handler("chatstate_composing", composing)  # xep_0085
    return seen


def test_inactive_client_gets_messages_now_and_presence_churn_later(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await login(server, "alice@localhost/phone", plugins=["xep_0352", "xep_0085"])
        bob = await login(server, "bob@localhost/b", plugins=["xep_0085"])
        carol = await login(server, "carol@localhost/c")
        out["feature"] = alice.plugin["xep_0352"].enabled
        await befriend(alice, bob)
        await befriend(alice, carol)
        bob.send_presence(pstatus="start")
        carol.send_presence(pstatus="start")
        await _sync(bob, carol)
        await _settle(0.3)
        seen = _stanza_log(alice)
        alice.plugin["xep_0352"].send_inactive()
        await _sync(alice)
        for n in range(50):
            bob.send_presence(pstatus=f"b{n}")
            carol.send_presence(pstatus=f"c{n}")
        composing = bob.make_message(mto="alice@localhost/phone", mtype="chat")
        composing["chat_state"] = "composing"
        composing.send()
        await _sync(bob, carol)
        await _settle()
        out["while_inactive"] = list(seen)
        alice.plugin["xep_0352"].send_active()
        await _sync(alice)  # XEP-0352 §5.1: the flush comes before the pong
        out["on_active"] = list(seen)
        seen.clear()
        # inactive again: churn waits, a message with a body comes at once (after what
        # was held before it, so nothing is reordered)
        alice.plugin["xep_0352"].send_inactive()
        await _sync(alice)
        for n in range(20):
            bob.send_presence(pstatus=f"again{n}")
        await _sync(bob)
        await _settle()
        out["churn_again"] = list(seen)
        bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
        msg = await alice.next_message(timeout=5)
        while not msg["body"]:
            msg = await alice.next_message(timeout=5)
        out["message"] = msg["body"]
        out["before_message"] = list(seen)
        for client in (alice, bob, carol):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["feature"] is True
    assert out["while_inactive"] == []
    on_active = out["on_active"]
    # one presence per contact (their latest), and the chat state, in the order sent
    assert sorted(on_active) == sorted(
        [
            "presence bob@localhost/b b49",
            "presence carol@localhost/c c49",
            "composing bob@localhost/b",
        ]
    )
    # bob's own order holds (his last presence was sent before his chat state); carol's
    # stanzas come over another connection, so their place relative to bob's is open
    assert on_active.index("composing bob@localhost/b") > on_active.index(
        "presence bob@localhost/b b49"
    )
    assert out["churn_again"] == []
    assert out["message"] == "wake up"
    assert out["before_message"] == [
        "presence bob@localhost/b again19",
        "body bob@localhost/b wake up",
    ]


def test_a_mention_in_a_room_comes_at_once_other_chatter_waits(server: XmppdProcess) -> None:
    room = "sax@conference.localhost"  # the seeded room

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await login(server, "alice@localhost/phone", plugins=["xep_0352", "xep_0045"])
        bob = await login(server, "bob@localhost/b", plugins=["xep_0045"])
        await alice.plugin["xep_0045"].join_muc_wait(room, "Ally", maxstanzas=0, timeout=5)
        await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", maxstanzas=0, timeout=5)
        await _settle(0.3)
        _drain(alice.messages)
        alice.plugin["xep_0352"].send_inactive()
        await _sync(alice)
        for n in range(3):
            bob.send_message(mto=room, mbody=f"chatter {n}", mtype="groupchat")
        await _sync(bob)
        await _settle()
        out["chatter"] = [m["body"] for m in _drain(alice.messages)]
        bob.send_message(mto=room, mbody="ally: look at this", mtype="groupchat")
        got = []
        while not got or got[-1] != "ally: look at this":
            got.append((await alice.next_message(timeout=5))["body"])
        out["mention"] = got
        for client in (alice, bob):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["chatter"] == []
    # the mention comes at once, after the chatter held before it (in order)
    assert out["mention"] == ["chatter 0", "chatter 1", "chatter 2", "ally: look at this"]


def test_held_stanzas_wait_through_a_detachment_and_come_after_resumption(
    tmp_path: Path,
) -> None:
    """XEP-0198: held stanzas are not counted (not sent); a detached inactive session
    keeps holding, and a resumed stream starts active (XEP-0352 §5.2), so they come then."""

    async def scenario(server: XmppdProcess) -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await login(
            server, "alice@localhost/phone", plugins=["xep_0352", "xep_0085", "xep_0198"]
        )
        bob = await login(server, "bob@localhost/b", plugins=["xep_0085"])
        await befriend(alice, bob)
        await _settle(0.3)
        sm = alice.plugin["xep_0198"]
        seen = _stanza_log(alice)
        alice.plugin["xep_0352"].send_inactive()
        await _sync(alice)
        for n in range(10):
            bob.send_presence(pstatus=f"before{n}")
        await _sync(bob)
        await _settle(0.3)
        out["held"] = list(seen)
        sm.request_ack()
        await _settle(0.3)
        alice.abort()
        for _ in range(100):
            if "event=session_detached jid=alice@localhost/phone" in server.log():
                break
            await asyncio.sleep(0.05)
        for n in range(10):
            bob.send_presence(pstatus=f"detached{n}")
        composing = bob.make_message(mto="alice@localhost/phone", mtype="chat")
        composing["chat_state"] = "composing"
        composing.send()
        await _sync(bob)
        resumed = asyncio.get_running_loop().create_future()
        alice.add_event_handler("session_resumed", lambda _e: resumed.set_result(True))
        alice.connect(host="127.0.0.1", port=server.port)
        await asyncio.wait_for(resumed, 10)
        await _settle(1.0)
        out["after_resume"] = list(seen)
        for client in (alice, bob):
            await client.close()
        return out

    with running_server(tmp_path, users=("alice", "bob"), sm={"resume_timeout": 30}) as srv:
        out = run(lambda: scenario(srv), timeout=60)
    assert out["held"] == []
    assert out["after_resume"] == [
        "presence bob@localhost/b detached9",
        "composing bob@localhost/b",
    ]


def test_over_websocket_chatter_waits_and_a_mention_brings_it_in_order(
    server: XmppdProcess,
) -> None:
    room = "sax@conference.localhost"
    muc = "http://jabber.org/protocol/muc"

    async def bodies(ws: WsXmpp, seconds: float) -> list[str]:
        got: list[str] = []
        try:
            while True:
                el = await ws.recv(seconds)
                if el.tag == q(CLIENT, "message") and el.findtext(q(CLIENT, "body")):
                    got.append(el.findtext(q(CLIENT, "body")) or "")
        except TimeoutError:
            return got

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        ws = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket")
        await ws.login("alice", "secret", "browser")
        bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
        await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", maxstanzas=0, timeout=10)
        await ws.send(
            f"<presence xmlns='jabber:client' to='{room}/Ally'>"
            f"<x xmlns='{muc}'><history maxstanzas='0'/></x></presence>"
        )
        await _settle(0.5)
        await ws.send("<inactive xmlns='urn:xmpp:csi:0'/>")  # RFC 7395: one per message
        await ws.send(
            "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>"
        )
        await ws.recv_until(q(CLIENT, "iq"))  # handled after the nonza (XEP-0352 §5.1)
        for n in range(3):
            bob.send_message(mto=room, mbody=f"chatter {n}", mtype="groupchat")
        await _sync(bob)
        out["chatter"] = await bodies(ws, 0.7)
        bob.send_message(mto=room, mbody="Ally, look", mtype="groupchat")
        out["mention"] = await bodies(ws, 1.0)
        await ws.close()
        await bob.close()
        return out

    out = run(scenario, timeout=60)
    assert out["chatter"] == []
    assert out["mention"] == ["chatter 0", "chatter 1", "chatter 2", "Ally, look"]
