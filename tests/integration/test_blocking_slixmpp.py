"""XEP-0191 blocking command against a real ``xmppd serve``, with slixmpp's xep_0191 plugin
over real sockets: the list, pushes, what a blocked JID's stanzas get, presence both ways,
and bad requests (nothing stored)."""

from __future__ import annotations

import asyncio
from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import IqError

from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess

pytestmark = pytest.mark.integration

BLOCKING = "urn:xmpp:blocking"


async def _blocker(server: XmppdProcess, jid: str) -> Client:
    return await login(server, jid, plugins=["xep_0191"])


def _errors(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("message_error", queue.put_nowait)
    return queue


def _pushes(client: Client) -> asyncio.Queue[tuple[str, list[str]]]:
    """The blocklist pushes ``client`` gets: ("blocked" or "unblocked", the items' JIDs)."""
    queue: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()

    def collect(event: str) -> Any:
        def handler(iq: Any) -> None:
            jids = [i.get("jid") for i in iq.xml.iter(f"{{{BLOCKING}}}item")]
            queue.put_nowait((event, sorted(jids)))

        return handler

    for event in ("blocked", "unblocked"):
        client.add_event_handler(event, collect(event))
    return queue


async def _nothing(queue: asyncio.Queue[Any], seconds: float = 0.5) -> bool:
    try:
        await asyncio.wait_for(queue.get(), seconds)
    except TimeoutError:
        return True
    return False


async def _raw_set(client: Client, payload: str) -> str:
    """Send an iq set with ``payload``; the error condition, or "result"."""
    iq = client.make_iq_set()
    iq.append(ElementTree.fromstring(payload))  # noqa: S314 - the test's own literal
    try:
        await iq.send(timeout=5)
    except IqError as exc:
        return str(exc.condition)
    return "result"


def test_block_list_pushes_and_what_a_blocked_jid_gets(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _blocker(xmppd_server, "alice@localhost/desk")
        phone = await _blocker(xmppd_server, "alice@localhost/phone")
        quiet = await _blocker(xmppd_server, "alice@localhost/quiet")  # never asks: no pushes
        bob = await login(xmppd_server, "bob@localhost/b")
        info = await alice.plugin["xep_0030"].get_info(jid="localhost")
        out["feature"] = BLOCKING in info["disco_info"]["features"]
        out["empty"] = await alice.plugin["xep_0191"].get_blocked_jids()
        await phone.plugin["xep_0191"].get_blocked_jids()
        pushed, quiet_pushes = _pushes(phone), _pushes(quiet)
        await alice.plugin["xep_0191"].block("bob@localhost")
        out["push"] = await asyncio.wait_for(pushed.get(), 5)
        out["quiet_push"] = not await _nothing(quiet_pushes, 0.3)
        out["list"] = await phone.plugin["xep_0191"].get_blocked_jids()

        # bob's message: service-unavailable to bob, nothing to alice
        bob_errors, alice_errors = _errors(bob), _errors(alice)
        bob.send_message(mto="alice@localhost", mbody="let me in", mtype="chat")
        err = await asyncio.wait_for(bob_errors.get(), 5)
        out["inbound"] = err["error"]["condition"]
        out["alice_quiet"] = await _nothing(alice.messages)
        try:
            await bob.plugin["xep_0092"].get_version("alice@localhost/desk", timeout=5)
            out["iq"] = "answered"
        except IqError as exc:
            out["iq"] = exc.condition
        # alice's message to bob: not-acceptable with <blocked/>, nothing to bob
        alice.send_message(mto="bob@localhost", mbody="hello?", mtype="chat")
        err = await asyncio.wait_for(alice_errors.get(), 5)
        out["outbound"] = err["error"]["condition"]
        out["blocked_child"] = err.xml.find(".//{urn:xmpp:blocking:errors}blocked") is not None
        out["bob_quiet"] = await _nothing(bob.messages)

        await alice.plugin["xep_0191"].unblock("bob@localhost")
        out["unpush"] = await asyncio.wait_for(pushed.get(), 5)
        bob.send_message(mto="alice@localhost/desk", mbody="finally", mtype="chat")
        out["delivered"] = (await alice.next_message())["body"]

        # unblock-all: an <unblock/> with no items empties the list and is pushed as such
        await alice.plugin["xep_0191"].block(["carol@localhost", "example.net"])
        await asyncio.wait_for(pushed.get(), 5)
        out["all"] = await _raw_set(alice, f"<unblock xmlns='{BLOCKING}'/>")
        out["all_push"] = await asyncio.wait_for(pushed.get(), 5)
        out["after_all"] = await alice.plugin["xep_0191"].get_blocked_jids()
        for client in (alice, phone, quiet, bob):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["feature"] is True
    assert out["empty"] == set()
    assert out["push"] == ("blocked", ["bob@localhost"])
    assert out["quiet_push"] is False
    assert {str(j) for j in out["list"]} == {"bob@localhost"}
    assert out["inbound"] == "service-unavailable" and out["alice_quiet"]
    assert out["iq"] == "service-unavailable"
    assert out["outbound"] == "not-acceptable" and out["blocked_child"]
    assert out["bob_quiet"]
    assert out["unpush"] == ("unblocked", ["bob@localhost"])
    assert out["delivered"] == "finally"
    assert out["all"] == "result" and out["all_push"] == ("unblocked", [])
    assert out["after_all"] == set()


def test_presence_stops_both_ways_and_comes_back(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _blocker(xmppd_server, "alice@localhost/a")
        bob = await login(xmppd_server, "bob@localhost/b")
        for client in (alice, bob):
            client.add_event_handler(
                "presence_subscribe",
                lambda p, c=client: c.send_presence(pto=p["from"].bare, ptype="subscribed"),
            )
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        await alice.next_presence(match=lambda p: p["type"] == "subscribed")
        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        await bob.next_presence(match=lambda p: p["type"] == "subscribed")
        alice.send_presence(pstatus="a1")
        await bob.next_presence(match=lambda p: p["status"] == "a1")

        def alice_says(status: str | None) -> Any:
            def match(p: Any) -> bool:
                if p["from"].bare != "alice@localhost":
                    return False
                return p["type"] == "unavailable" if status is None else p["status"] == status

            return match

        def bob_says(status: str) -> Any:
            return lambda p: p["from"].bare == "bob@localhost" and p["status"] == status

        await alice.plugin["xep_0191"].block("bob@localhost")
        await bob.next_presence(match=alice_says(None))  # §3.3: alice goes away for bob
        alice.send_presence(pstatus="a2")
        bob.send_presence(pstatus="b2")
        try:
            await bob.next_presence(timeout=0.7, match=alice_says("a2"))
            out["bob_sees"] = True
        except TimeoutError:
            out["bob_sees"] = False
        try:
            await alice.next_presence(timeout=0.7, match=bob_says("b2"))
            out["alice_sees"] = True
        except TimeoutError:
            out["alice_sees"] = False
        await alice.plugin["xep_0191"].unblock("bob@localhost")
        out["back"] = (await bob.next_presence(match=alice_says("a2")))["type"]
        out["seen"] = (await alice.next_presence(match=bob_says("b2")))["type"]
        for client in (alice, bob):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["bob_sees"] is False and out["alice_sees"] is False
    assert out["back"] == "available" and out["seen"] == "available"


def test_bad_requests_and_a_blocked_resource(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _blocker(xmppd_server, "alice@localhost/a")
        b1 = await login(xmppd_server, "bob@localhost/b1")
        b2 = await login(xmppd_server, "bob@localhost/b2")
        out["malformed"] = await _raw_set(
            alice, f"<block xmlns='{BLOCKING}'><item jid='a@b@c'/></block>"
        )
        out["no_items"] = await _raw_set(alice, f"<block xmlns='{BLOCKING}'/>")
        long_jid = "x" * 300 + "@localhost/" + "r" * 200
        out["too_long"] = await _raw_set(
            alice, f"<block xmlns='{BLOCKING}'><item jid='{long_jid}'/></block>"
        )
        out["nothing_stored"] = await alice.plugin["xep_0191"].get_blocked_jids()
        # a full JID blocks only that resource
        await alice.plugin["xep_0191"].block("bob@localhost/b1")
        errors = _errors(b1)
        b1.send_message(mto="alice@localhost/a", mbody="from b1", mtype="chat")
        out["b1"] = (await asyncio.wait_for(errors.get(), 5))["error"]["condition"]
        b2.send_message(mto="alice@localhost/a", mbody="from b2", mtype="chat")
        out["b2"] = (await alice.next_message())["body"]
        for client in (alice, b1, b2):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["malformed"] == "jid-malformed"
    assert out["no_items"] == "bad-request"
    assert out["too_long"] == "not-acceptable"
    assert out["nothing_stored"] == set()
    assert out["b1"] == "service-unavailable"
    assert out["b2"] == "from b2"
