"""``bridges.component.ComponentClient`` against a real ``xmppd serve`` and slixmpp users.

The component runs on trio in a background thread (:mod:`tests.component_thread`;
slixmpp needs asyncio in the test's thread).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from lxml import etree

from bridges.component import Backoff, ComponentClient
from tests.component_thread import ComponentThread
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, free_port, make_server, refusals

pytestmark = pytest.mark.integration

DOMAIN = "bot.localhost"
SECRET = "b0t-secret"
C = "{jabber:component:accept}"


def message(to: str, body: str, sender: str = f"relay@{DOMAIN}/bot") -> etree._Element:
    """Built in jabber:client on purpose: the client converts it."""
    el = etree.Element("{jabber:client}message", nsmap={None: "jabber:client"})
    el.set("from", sender)
    el.set("to", to)
    el.set("type", "chat")
    etree.SubElement(el, "{jabber:client}body").text = body
    return el


def component_kwargs(server: XmppdProcess, **extra: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.component_port,
        "domain": DOMAIN,
        "secret": SECRET,
        "backoff": Backoff(initial=0.1, maximum=0.5, floor=0.05),
    }
    kwargs.update(extra)
    return kwargs


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    srv = make_server(tmp_path, components=[{"domain": DOMAIN, "secret": SECRET}])
    srv.add_user("alice", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_exchange_with_slixmpp_and_on_connected_first(server: XmppdProcess) -> None:
    async def joined(client: ComponentClient) -> None:
        await client.send_now(message("alice@localhost", "first"))

    with ComponentThread(**component_kwargs(server, on_connected=joined)) as comp:
        # queued before the first connection: must go out after on_connected's stanza
        comp.send(message("alice@localhost", "queued"))
        comp.wait_connected()

        async def scenario() -> tuple[list[str], str]:
            alice = await login(server, "alice@localhost/desk")
            bodies = [(await alice.next_message())["body"] for _ in range(2)]
            alice.send_message(mto=f"relay@{DOMAIN}/bot", mbody="to the bot", mtype="chat")
            got = await asyncio.to_thread(comp.received.get, True, 5)
            await alice.close()
            return bodies, etree.tostring(got).decode()

        bodies, stanza = run(scenario)
    assert bodies == ["first", "queued"]
    el = etree.fromstring(stanza.encode())
    assert el.tag == f"{C}message"
    assert el.get("from") == "alice@localhost/desk"
    assert el.findtext(f"{C}body") == "to the bot"
    assert comp.events == ["connected", "stopped"]
    assert "event=component_disconnected domain=bot.localhost" in server.log()


def test_server_restart_reconnects_and_queued_stanzas_arrive_once(server: XmppdProcess) -> None:
    with ComponentThread(**component_kwargs(server)) as comp:
        comp.wait_connected()
        server.stop()
        comp.wait_disconnected()
        for i in range(5):
            comp.send(message("alice@localhost", f"queued {i}"))
        assert comp.sync(lambda: comp.client.queued) == 5  # type: ignore[union-attr]
        server.start()
        comp.wait_connected(15)
        deadline = time.monotonic() + 10
        while comp.sync(lambda: comp.client.queued):  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert comp.events.count("connected") == 2

        async def scenario() -> list[str]:
            alice = await login(server, "alice@localhost/desk")  # gets them from offline
            bodies = [(await alice.next_message())["body"] for _ in range(5)]
            with pytest.raises(TimeoutError):
                await alice.next_message(timeout=1.0)  # and nothing twice
            await alice.close()
            return bodies

        assert run(scenario) == [f"queued {i}" for i in range(5)]


def test_wrong_secret_backs_off_instead_of_looping(tmp_path: Path) -> None:
    srv = make_server(tmp_path, components=[{"domain": DOMAIN, "secret": "the right one"}])
    srv.start()
    try:
        kwargs = component_kwargs(srv, backoff=Backoff(initial=0.2, maximum=0.4, floor=0.2))
        with ComponentThread(**kwargs) as comp:
            time.sleep(1.5)
            attempts = comp.sync(lambda: comp.client.attempts)  # type: ignore[union-attr]
            connected = comp.sync(lambda: comp.client.connections)  # type: ignore[union-attr]
    finally:
        srv.stop()
    # the first refusal is logged at once, the rest as one summary line (at stop at the latest)
    refused = refusals(srv.log(), "component", "not-authorized")
    assert connected == 0
    # with a 0.2 s floor, 1.5 s allow at most 1 + 1.5 / 0.2 attempts; a tight loop makes hundreds
    assert 2 <= attempts <= 9, attempts
    assert refused >= 2


def test_queue_overflow_drops_oldest_and_logs_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens: the client stays disconnected

    async def main() -> tuple[int, int, list[bytes]]:
        client = ComponentClient(
            "127.0.0.1", port, DOMAIN, SECRET, on_stanza=_ignore, queue_size=3,
            backoff=Backoff(initial=0.05, maximum=0.1), flush_timeout=0.2,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            for i in range(5):
                client.send(message("alice@localhost", f"m{i}"))
            queued = [data for _, data in client._queue]
            await client.aclose()
        return client.queued, client.dropped, queued

    with caplog.at_level("WARNING", logger="bridges.component"):
        queued, dropped, items = trio.run(main)
    assert (queued, dropped) == (3, 2)
    assert [re.search(rb"<body>(m\d)</body>", d).group(1) for d in items] == [b"m2", b"m3", b"m4"]  # type: ignore[union-attr]
    assert any("event=component_queue_overflow" in r.getMessage() and "dropped=" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_aclose_flushes_then_closes_the_stream(server: XmppdProcess) -> None:
    with ComponentThread(**component_kwargs(server)) as comp:
        comp.wait_connected()
        for i in range(50):
            comp.send(message("alice@localhost", f"bulk {i}"))

        async def close() -> int:
            await comp.client.aclose()  # type: ignore[union-attr]
            return comp.client.queued  # type: ignore[union-attr]

        assert comp.call(close) == 0

    async def scenario() -> list[str]:
        alice = await login(server, "alice@localhost/desk")
        bodies = [(await alice.next_message())["body"] for _ in range(50)]
        await alice.close()
        return bodies

    assert run(scenario) == [f"bulk {i}" for i in range(50)]
    assert "event=component_crashed" not in server.log()


async def _ignore(stanza: etree._Element) -> None:
    return None


def test_keepalive_round_trip_keeps_an_idle_connection(server: XmppdProcess) -> None:
    kwargs = component_kwargs(server, keepalive_interval=0.2, keepalive_timeout=1.0)
    with ComponentThread(**kwargs) as comp:
        comp.wait_connected()
        time.sleep(1.5)  # several silent intervals: pings go round through the server
        assert comp.sync(lambda: comp.client.connected)  # type: ignore[union-attr]
        assert comp.sync(lambda: comp.client.connections) == 1  # type: ignore[union-attr]
        assert comp.received.empty()  # the pings never reach on_stanza
