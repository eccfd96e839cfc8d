"""Desktop-client behaviour against a real ``xmppd serve``, with slixmpp over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from tests.raw_client import RawClient
from tests.slix import AuthFailed, login, run
from tests.xmppd_process import XmppdProcess

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_login_with_each_mechanism(xmppd_server: XmppdProcess, mechanism: str) -> None:
    async def scenario() -> str:
        client = await login(xmppd_server, "alice@localhost/desk", mechanism=mechanism)
        jid = str(client.boundjid)
        await client.close()
        return jid

    assert run(scenario) == "alice@localhost/desk"
    assert f"mechanism={mechanism}" in xmppd_server.log()


def test_direct_tls_login(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> bool:
        client = await login(xmppd_server, "alice@localhost/tls", direct_tls=True)
        secure = client.is_connected()
        await client.close()
        return secure

    assert run(scenario) is True


def test_wrong_password_is_refused(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> None:
        await login(xmppd_server, "alice@localhost/x", "Tr0ub4dor-not-it")

    with pytest.raises(AuthFailed):
        run(scenario)
    assert "event=auth_failed" in xmppd_server.log()
    assert "Tr0ub4dor" not in xmppd_server.log()


def test_chat_message_with_non_ascii_text(xmppd_server: XmppdProcess) -> None:
    text = "Grüße, 世界! 🎉 <b>&amp; not markup</b>"

    async def scenario() -> tuple[str, str, str]:
        alice = await login(xmppd_server, "alice@localhost/a")
        bob = await login(xmppd_server, "bob@localhost/b")
        alice.send_message(mto="bob@localhost", mbody=text, mtype="chat")
        msg = await bob.next_message()
        await alice.close()
        await bob.close()
        return str(msg["from"]), msg["body"], msg["type"]

    sender, body, kind = run(scenario)
    assert sender == "alice@localhost/a"
    assert body == text
    assert kind == "chat"


def test_forged_from_is_replaced(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> str:
        alice = await login(xmppd_server, "alice@localhost/a")
        bob = await login(xmppd_server, "bob@localhost/b")
        msg = alice.make_message(mto="bob@localhost/b", mbody="hi", mtype="chat")
        msg["from"] = "admin@localhost/console"
        msg.send()
        got = await bob.next_message()
        await alice.close()
        await bob.close()
        return str(got["from"])

    assert run(scenario) == "alice@localhost/a"


def test_ping_server_and_client(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> float:
        alice = await login(xmppd_server, "alice@localhost/a")
        rtt = await alice.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        await alice.close()
        return rtt

    assert run(scenario) >= 0


def test_disco_info_of_server(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> set[str]:
        alice = await login(xmppd_server, "alice@localhost/a")
        info = await alice.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
        await alice.close()
        return set(info["disco_info"]["features"])

    features = run(scenario)
    assert "urn:xmpp:ping" in features
    assert "http://jabber.org/protocol/disco#info" in features


def test_subscription_roster_and_presence(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> tuple[str, str, str]:
        alice = await login(xmppd_server, "alice@localhost/a")
        bob = await login(xmppd_server, "bob@localhost/b")
        bob.add_event_handler(
            "presence_subscribe",
            lambda p: bob.send_presence(pto=p["from"].bare, ptype="subscribed"),
        )
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        await alice.next_presence(match=lambda p: p["type"] == "subscribed")
        # bob's available presence now reaches alice
        bob.send_presence(pstatus="here")
        pres = await alice.next_presence(
            match=lambda p: p["from"].bare == "bob@localhost" and p["status"] == "here"
        )
        # With roster versioning the server may answer "unchanged" (XEP-0237): read the
        # client's roster, which the pushes and the result keep up to date.
        await alice.get_roster()
        subscription = alice.client_roster["bob@localhost"]["subscription"]
        await alice.close()
        await bob.close()
        return str(pres["from"]), subscription, "ok"

    sender, subscription, _ = run(scenario)
    assert sender == "bob@localhost/b"
    assert subscription in ("to", "both")


def test_resource_conflict_new_session_wins(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> tuple[bool, bool]:
        first = await login(xmppd_server, "alice@localhost/same")
        first.auto_reconnect = False
        second = await login(xmppd_server, "alice@localhost/same")
        for _ in range(100):
            if first.stream_errors:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        alive = second.is_connected()
        await second.close()
        return "conflict" in first.stream_errors, alive

    had_conflict, alive = run(scenario)
    assert had_conflict
    assert alive


def test_message_to_offline_user_is_delivered_on_login(xmppd_server: XmppdProcess) -> None:
    async def scenario() -> tuple[str, bool]:
        alice = await login(xmppd_server, "alice@localhost/a")
        alice.send_message(mto="bob@localhost", mbody="while you were away", mtype="chat")
        await asyncio.sleep(0.3)
        await alice.close()
        bob = await login(xmppd_server, "bob@localhost/b")
        msg = await bob.next_message()
        await bob.close()
        return msg["body"], bool(msg["delay"]["stamp"])

    body, delayed = run(scenario)
    assert body == "while you were away"
    assert delayed


def test_graceful_shutdown_sends_system_shutdown(xmppd_server: XmppdProcess) -> None:
    client = RawClient(xmppd_server.port)
    client.login("alice", "secret", resource="until-shutdown")
    client.send(b"<presence/>")
    assert xmppd_server.stop() == 0
    data = client.read_to_close()
    assert b"<system-shutdown" in data
    assert data.rstrip().endswith(b"</stream:stream>")
