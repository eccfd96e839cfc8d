"""A component (bridges.component) as an occupant of sax@conference.localhost, with a
slixmpp occupant on the other side, against a real ``xmppd serve``."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from bridges.component import Backoff, ComponentClient
from tests.component_thread import ComponentThread
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
DOMAIN = "irc.localhost"
SECRET = "irc-secret"
BOT = f"relay@{DOMAIN}/bridge"
C = "{jabber:component:accept}"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "{http://jabber.org/protocol/muc#user}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    components = [{"domain": DOMAIN, "secret": SECRET, "muc_nicks": ["IRC", "irc-*"]}]
    with running_server(tmp_path, users=("alice",), components=components) as srv:
        yield srv


def join_presence(nick: str) -> etree._Element:
    p = etree.Element("presence")
    p.set("from", BOT)
    p.set("to", f"{ROOM}/{nick}")
    x = etree.SubElement(p, "{%s}x" % MUC, nsmap={None: MUC})
    etree.SubElement(x, "{%s}history" % MUC, maxstanzas="0")
    return p


def groupchat(body: str) -> etree._Element:
    m = etree.Element("message", type="groupchat")
    m.set("from", BOT)
    m.set("to", ROOM)
    etree.SubElement(m, "body").text = body
    return m


def wait_stanza(comp: ComponentThread, match: Any, timeout: float = 5.0) -> etree._Element:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no matching stanza")
        try:
            el = comp.received.get(timeout=remaining)
        except queue.Empty:
            continue
        if match(el):
            return el


def is_self_presence(el: etree._Element) -> bool:
    return el.tag == f"{C}presence" and any(
        s.get("code") == "110" for s in el.iter(f"{MUC_USER}status")
    )


def kwargs(server: XmppdProcess, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.component_port,
        "domain": DOMAIN,
        "secret": SECRET,
        "backoff": Backoff(initial=0.1, maximum=0.5),
    }
    base.update(extra)
    return base


def test_component_occupant_talks_with_a_slixmpp_occupant(server: XmppdProcess) -> None:
    async def on_connected(client: ComponentClient) -> None:
        await client.send_now(join_presence("IRC"))

    with ComponentThread(**kwargs(server, on_connected=on_connected)) as comp:
        comp.wait_connected()
        self_pres = wait_stanza(comp, is_self_presence)
        assert self_pres.get("from") == f"{ROOM}/IRC"

        async def scenario() -> tuple[str, str, str, str]:
            alice = await login(server, "alice@localhost/web", plugins=["xep_0045"])
            await alice.plugin["xep_0045"].join_muc_wait(ROOM, "alice", maxstanzas=0, timeout=10)
            comp.send(groupchat("<bob> hello from IRC & co"))
            while True:
                msg = await alice.next_message()
                if msg["type"] == "groupchat" and msg["body"]:
                    break
            alice.send_message(mto=ROOM, mbody="hi IRC people", mtype="groupchat")
            got = await asyncio.to_thread(
                wait_stanza,
                comp,
                lambda el: el.tag == f"{C}message" and el.get("from") == f"{ROOM}/alice",
            )
            await alice.close()
            stanza_id = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
            return (
                str(msg["from"]),
                msg["body"],
                got.findtext(f"{C}body") or "",
                stanza_id.get("by") if stanza_id is not None else "",
            )

        sender, body, relayed, by = run(scenario)
    assert sender == f"{ROOM}/IRC"
    assert body == "<bob> hello from IRC & co"
    assert relayed == "hi IRC people"
    assert by == ROOM


def test_nick_outside_allowance_is_refused(server: XmppdProcess) -> None:
    with ComponentThread(**kwargs(server)) as comp:
        comp.wait_connected()
        comp.send(join_presence("alice"))
        err = wait_stanza(comp, lambda el: el.get("type") == "error")
    assert err.tag == f"{C}presence"
    cond = err.find(f"{C}error")
    assert cond is not None
    assert cond.find("{urn:ietf:params:xml:ns:xmpp-stanzas}not-acceptable") is not None


def test_disconnected_component_leaves_the_room(server: XmppdProcess) -> None:
    async def on_connected(client: ComponentClient) -> None:
        await client.send_now(join_presence("irc-relay"))

    async def scenario() -> str:
        alice = await login(server, "alice@localhost/web", plugins=["xep_0045"])
        presences: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler(f"muc::{ROOM}::presence", presences.put_nowait)
        await alice.plugin["xep_0045"].join_muc_wait(ROOM, "alice", maxstanzas=0, timeout=10)
        with ComponentThread(**kwargs(server, on_connected=on_connected)) as comp:
            comp.wait_connected()
            wait_stanza(comp, is_self_presence)
        # the component closed its stream: alice sees it leave
        while True:
            pres = await asyncio.wait_for(presences.get(), 5)
            if pres["type"] == "unavailable" and pres["from"].resource == "irc-relay":
                break
        await alice.close()
        return str(pres["from"])

    assert run(scenario, timeout=40) == f"{ROOM}/irc-relay"
