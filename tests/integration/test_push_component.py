"""XEP-0357 push notifications against a real ``xmppd serve``: slixmpp users over real
sockets and a small app server (a XEP-0114 component, ``push.localhost``) that records
the publishes it gets. Offline and detached (XEP-0198) recipients wake their app server,
without the body by default; ``disable`` stops it; an app server's error disables the
registration; bad ``enable`` requests get their errors and store nothing."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from lxml import etree
from slixmpp.exceptions import IqError
from slixmpp.stanza.error import Error

from bridges.component import Backoff
from tests.component_thread import ComponentThread
from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

# slixmpp's list of stanza error conditions predates RFC 6120 §8.3.3.12: without this it
# cannot read a policy-violation error and its iq times out.
Error.conditions = Error.conditions | {"policy-violation"}

APP = "push.localhost"
SECRET = "app-s3cret"
PUSH = "urn:xmpp:push:0"
PUBSUB = "{http://jabber.org/protocol/pubsub}"
DATA = "{jabber:x:data}"
C = "{jabber:component:accept}"
OPTIONS = (
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
    "</field><field var='secret'><value>s3cr3t</value></field></x>"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(
        tmp_path,
        users=("alice", "bob"),
        components=[{"domain": APP, "secret": SECRET}],
        sm={"resume_timeout": 30},
        push={"max_registrations": 2, "min_interval": 0},
    ) as srv:
        yield srv


class AppServer(ComponentThread):
    """Answers each publish with a result, or with ``fail`` (an error condition)."""

    def __init__(self, server: XmppdProcess, fail: str | None = None) -> None:
        super().__init__(
            host="127.0.0.1",
            port=server.component_port,
            domain=APP,
            secret=SECRET,
            backoff=Backoff(initial=0.1, maximum=0.5, floor=0.05),
        )
        self.fail = fail
        self.publishes: queue.Queue[etree._Element] = queue.Queue()

    def answer_all(self, seconds: float) -> None:
        """For ``seconds``, answer every publish that arrives (and keep it)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                iq = self.received.get(timeout=0.1)
            except queue.Empty:
                continue
            if iq.tag != C + "iq" or iq.get("type") != "set":
                continue
            self.publishes.put(iq)
            reply = etree.Element("{jabber:client}iq", nsmap={None: "jabber:client"})
            reply.set("type", "error" if self.fail else "result")
            reply.set("id", iq.get("id") or "")
            reply.set("from", APP)
            reply.set("to", iq.get("from") or "")
            if self.fail:
                err = etree.SubElement(reply, "{jabber:client}error", type="cancel")
                etree.SubElement(err, "{urn:ietf:params:xml:ns:xmpp-stanzas}" + self.fail)
            self.send(reply)


def summary(iq: etree._Element) -> dict[str, str]:
    note = iq.find(f"{PUBSUB}pubsub/{PUBSUB}publish/{PUBSUB}item/{{{PUSH}}}notification")
    assert note is not None, etree.tostring(iq)
    form = note.find(DATA + "x")
    assert form is not None
    return {f.get("var"): f.findtext(DATA + "value") for f in form.iter(DATA + "field")}


async def _set(client: Client, payload: str) -> str:
    iq = client.make_iq_set()
    iq.append(ElementTree.fromstring(payload))  # noqa: S314 - the test's own literal
    try:
        await iq.send(timeout=5)
    except IqError as exc:
        return str(exc.condition)
    return "result"


def enable(node: str, form: str = "") -> str:
    return f"<enable xmlns='{PUSH}' jid='{APP}' node='{node}'>{form}</enable>"


def test_offline_user_wakes_the_app_server_without_the_body(server: XmppdProcess) -> None:
    with AppServer(server) as app:
        app.wait_connected()

        async def register() -> dict[str, Any]:
            alice = await login(server, "alice@localhost/phone")
            info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
            out = {"feature": PUSH in info["disco_info"]["features"]}
            out["enable"] = await _set(alice, enable("n1", OPTIONS))
            await alice.close()
            bob = await login(server, "bob@localhost/b")
            bob.send_message(mto="alice@localhost", mbody="secret words", mtype="chat")
            await bob.plugin["xep_0199"].send_ping("localhost", timeout=5)
            await bob.close()
            return out

        out = run(register)
        app.answer_all(1.5)
        assert out == {"feature": True, "enable": "result"}
        iq = app.publishes.get_nowait()
        assert iq.get("from") == "alice@localhost"
        assert iq.find(f"{PUBSUB}pubsub/{PUBSUB}publish").get("node") == "n1"
        assert summary(iq) == {
            "FORM_TYPE": "urn:xmpp:push:summary",
            "message-count": "1",
            "last-message-sender": "bob@localhost/b",
        }
        options = iq.find(f"{PUBSUB}pubsub/{PUBSUB}publish-options/{DATA}x")
        assert options is not None
        assert {f.get("var"): f.findtext(DATA + "value") for f in options} == {
            "FORM_TYPE": "http://jabber.org/protocol/pubsub#publish-options",
            "secret": "s3cr3t",
        }
        assert b"secret words" not in etree.tostring(iq)

        async def disable_and_send() -> None:
            alice = await login(server, "alice@localhost/phone")
            assert await _set(alice, f"<disable xmlns='{PUSH}' jid='{APP}'/>") == "result"
            await alice.close()
            bob = await login(server, "bob@localhost/b")
            bob.send_message(mto="alice@localhost", mbody="again", mtype="chat")
            await bob.plugin["xep_0199"].send_ping("localhost", timeout=5)
            await bob.close()

        run(disable_and_send)
        app.answer_all(1.0)
        assert app.publishes.empty()


def test_detached_session_wakes_the_app_server(server: XmppdProcess) -> None:
    with AppServer(server) as app:
        app.wait_connected()

        async def scenario() -> None:
            alice = await login(server, "alice@localhost/phone", plugins=["xep_0198"])
            for _ in range(100):  # <enabled/>
                if alice.plugin["xep_0198"].sm_id:
                    break
                await asyncio.sleep(0.05)
            assert await _set(alice, enable("n2")) == "result"
            bob = await login(server, "bob@localhost/b")
            bob.send_message(mto="alice@localhost", mbody="while online", mtype="chat")
            assert (await alice.next_message())["body"] == "while online"
            alice.abort()
            for _ in range(100):
                if "event=session_detached jid=alice@localhost/phone" in server.log():
                    break
                await asyncio.sleep(0.05)
            bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
            await bob.plugin["xep_0199"].send_ping("localhost", timeout=5)
            await bob.close()

        run(scenario)
        app.answer_all(1.5)
        iq = app.publishes.get_nowait()
        assert summary(iq)["message-count"] == "1"  # only the one sent while detached
        assert app.publishes.empty()


def test_an_app_server_error_disables_the_registration(server: XmppdProcess) -> None:
    with AppServer(server, fail="item-not-found") as app:
        app.wait_connected()

        async def one(body: str, first: bool) -> None:
            alice = await login(server, "alice@localhost/phone")
            if first:
                assert await _set(alice, enable("gone")) == "result"
            await alice.close()
            bob = await login(server, "bob@localhost/b")
            bob.send_message(mto="alice@localhost", mbody=body, mtype="chat")
            await bob.plugin["xep_0199"].send_ping("localhost", timeout=5)
            await bob.close()

        run(lambda: one("first", True))
        app.answer_all(1.5)
        assert app.publishes.qsize() == 1
        run(lambda: one("second", False))
        app.answer_all(1.0)
        assert app.publishes.qsize() == 1  # nothing more after the error
    assert "event=push_disabled_by_error owner=alice@localhost" in server.log()


def test_bad_enable_requests_get_errors_and_store_nothing(server: XmppdProcess) -> None:
    odd_form = (
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        "<value>urn:example:other</value></field></x>"
    )
    no_var = (
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
        "<field><value>x</value></field></x>"
    )
    huge = OPTIONS.replace("s3cr3t", "x" * 5000)

    async def scenario() -> dict[str, str]:
        alice = await login(server, "alice@localhost/phone")
        out = {
            "no jid": await _set(alice, f"<enable xmlns='{PUSH}' node='n'/>"),
            "bad jid": await _set(alice, f"<enable xmlns='{PUSH}' jid='a@@b' node='n'/>"),
            "odd form": await _set(alice, enable("n", odd_form)),
            "no var": await _set(alice, enable("n", no_var)),
            "huge": await _set(alice, enable("n", huge)),
            "long node": await _set(alice, enable("n" * 300)),
            "first": await _set(alice, enable("a")),
            "second": await _set(alice, enable("b")),
            "again": await _set(alice, enable("a", OPTIONS)),  # same node: replaces
            "third": await _set(alice, enable("c")),
            "disable no jid": await _set(alice, f"<disable xmlns='{PUSH}'/>"),
        }
        await alice.close()
        return out

    assert run(scenario) == {
        "no jid": "bad-request",
        "bad jid": "jid-malformed",
        "odd form": "bad-request",
        "no var": "bad-request",
        "huge": "not-acceptable",
        "long node": "not-acceptable",
        "first": "result",
        "second": "result",
        "again": "result",
        "third": "policy-violation",
        "disable no jid": "bad-request",
    }
