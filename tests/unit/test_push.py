"""XEP-0357 push: the enable request's checks, the publish, the rate and the §7.1 errors."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from xmppd.jid import JID
from xmppd.observers import RoutedMessage
from xmppd.router import Router
from xmppd.services.push import PushService, notification, parse_options, parse_target
from xmppd.services.push_config import PushConfig
from xmppd.storage.push import PushRegistration
from xmppd.xml.errors import StanzaError

PUSH = "urn:xmpp:push:0"
PUBSUB = "{http://jabber.org/protocol/pubsub}"
DATA = "{jabber:x:data}"
OPTIONS = (
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
    "</field><field var='secret'><value>s</value></field>{extra}</x>"
)


def enable(attrs: str = "jid='push.example.org' node='n'", form: str = "") -> etree._Element:
    return etree.fromstring(f"<enable xmlns='{PUSH}' {attrs}>{form}</enable>")


def condition(fn: Any, *args: Any) -> str:
    with pytest.raises(StanzaError) as info:
        fn(*args)
    return info.value.condition


# ------------------------------------------------------------------ the request
def test_target_needs_a_valid_jid_and_a_bounded_node() -> None:
    assert parse_target(enable()) == ("push.example.org", "n")
    assert parse_target(enable("jid='push.example.org'")) == ("push.example.org", None)
    assert condition(parse_target, enable("node='n'")) == "bad-request"
    assert condition(parse_target, enable("jid='a@@b'")) == "jid-malformed"
    assert condition(parse_target, enable(f"jid='p.example.org' node='{'x' * 257}'")) == (
        "not-acceptable"
    )


def test_options_form_is_checked_and_kept_serialised() -> None:
    assert parse_options(enable(), 2048) == ("", False)
    text, body = parse_options(enable(form=OPTIONS.format(extra="")), 2048)
    assert "secret" in text and body is False
    asks = "<field var='include-body'><value>true</value></field>"
    assert parse_options(enable(form=OPTIONS.format(extra=asks)), 2048)[1] is True
    odd = [
        OPTIONS.format(extra="<field><value>no var</value></field>"),
        OPTIONS.format(extra="<field var='secret'><value>twice</value></field>"),
        OPTIONS.format(extra="<junk/>"),
        OPTIONS.replace("pubsub#publish-options", "pubsub#node_config"),
        OPTIONS.replace("type='submit'", "type='form'"),
        OPTIONS.format(extra="") + "<other xmlns='urn:example'/>",
    ]
    for form in odd:
        assert condition(parse_options, enable(form=form), 2048) == "bad-request", form
    big = OPTIONS.format(extra="<field var='pad'><value>" + "x" * 3000 + "</value></field>")
    assert condition(parse_options, enable(form=big), 2048) == "not-acceptable"
    many = "".join(f"<field var='f{i}'><value>v</value></field>" for i in range(20))
    assert condition(parse_options, enable(form=OPTIONS.format(extra=many)), 2048) == (
        "not-acceptable"
    )


def test_notification_is_a_pubsub_publish_with_the_summary_and_options() -> None:
    reg = PushRegistration("alice@example.org", "push.example.org", "n1", OPTIONS.format(extra=""))
    iq = notification(reg, "push-1", 3, "bob@example.org/b", None)
    assert (iq.get("type"), iq.get("from"), iq.get("to")) == (
        "set",
        "alice@example.org",
        "push.example.org",
    )
    publish = iq.find(f"{PUBSUB}pubsub/{PUBSUB}publish")
    assert publish is not None and publish.get("node") == "n1"
    form = publish.find(f"{PUBSUB}item/{{{PUSH}}}notification/{DATA}x")
    fields = {f.get("var"): f.findtext(DATA + "value") for f in form}  # type: ignore[union-attr]
    assert fields == {
        "FORM_TYPE": "urn:xmpp:push:summary",
        "message-count": "3",
        "last-message-sender": "bob@example.org/b",
    }
    assert iq.find(f"{PUBSUB}pubsub/{PUBSUB}publish-options/{DATA}x") is not None
    with_body = notification(reg, "push-2", 1, "bob@example.org/b", "hi")
    assert b"<value>hi</value>" in etree.tostring(with_body)


# -------------------------------------------------------------- the service
class Accounts:
    async def user_exists(self, localpart: str) -> bool:
        return localpart == "alice"


class AppServer:
    keeps_stanza = True

    def __init__(self) -> None:
        self.got: list[etree._Element] = []

    async def handle(self, stanza: etree._Element, to: JID, origin: object) -> None:
        self.got.append(stanza)


class Adb:
    db = None

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def run(self, fn: Any, *args: Any) -> None:
        self.calls.append((fn.__name__, *args))


def service(**config: Any) -> tuple[PushService, AppServer, Adb, PushRegistration]:
    router = Router("example.org", Accounts())
    app = AppServer()
    router.services["push.example.org"] = app
    adb = Adb()
    svc = PushService(router, adb, PushConfig(**config))  # type: ignore[arg-type]
    reg = PushRegistration("alice@example.org", "push.example.org", "n", "")
    svc.registrations = {"alice@example.org": [reg]}
    return svc, app, adb, reg


def offline_message(body: str = "hi") -> RoutedMessage:
    stanza = etree.fromstring(
        "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org' "
        f"type='chat'><body>{body}</body></message>"
    )
    return RoutedMessage(stanza, JID.parse("alice@example.org"), None, local=True, offline=True)


async def run_jobs(svc: PushService) -> None:
    while True:
        try:
            job = svc._jobs.receive_nowait()
        except Exception:
            return
        await job()


def answer(svc: PushService, iq: etree._Element, kind: str = "result", etype: str = "") -> None:
    reply = etree.Element("{jabber:client}iq", type=kind, id=iq.get("id") or "")
    reply.set("from", "push.example.org")
    reply.set("to", "alice@example.org")
    if kind == "error":
        err = etree.SubElement(reply, "{jabber:client}error", type=etype)
        etree.SubElement(err, "{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found")
    svc.router._answer_awaited(reply)


async def test_one_publish_per_interval_while_unanswered_counts_the_rest() -> None:
    svc, app, _adb, _reg = service(min_interval=60)
    for _ in range(3):
        await svc.routed(offline_message())
    await run_jobs(svc)
    assert len(app.got) == 1
    answer(svc, app.got[0])  # answered: the next message publishes at once
    await svc.routed(offline_message())
    await run_jobs(svc)
    assert len(app.got) == 2
    form = app.got[1].find(f".//{{{PUSH}}}notification/{DATA}x")
    count = [f.findtext(DATA + "value") for f in form if f.get("var") == "message-count"]  # type: ignore[union-attr]
    assert count == ["3"]  # the two held back by the rate and this one
    assert b"<value>hi</value>" not in etree.tostring(app.got[1])  # no body by default


async def test_messages_to_an_attached_session_or_without_body_do_not_publish() -> None:
    svc, app, _adb, _reg = service()
    msg = offline_message()
    msg.offline = False

    class Attached:
        attached = True

    msg.reached = [Attached()]  # type: ignore[list-item]
    await svc.routed(msg)
    bodiless = offline_message()
    bodiless.stanza.remove(bodiless.stanza[0])
    await svc.routed(bodiless)
    await run_jobs(svc)
    assert app.got == []


async def test_the_body_only_when_the_server_allows_and_the_client_asked() -> None:
    svc, app, _adb, reg = service(include_body=True)
    await svc.routed(offline_message("plain words"))
    await run_jobs(svc)
    assert b"plain words" not in etree.tostring(app.got[0])  # the client did not ask
    asks = "<field var='include-body'><value>1</value></field>"
    asking = PushRegistration(reg.owner, reg.jid, "m", OPTIONS.format(extra=asks))
    svc.registrations[reg.owner] = [asking]
    await svc.routed(offline_message("asked for"))
    await run_jobs(svc)
    assert b"<value>asked for</value>" in etree.tostring(app.got[-1])


async def test_an_error_disables_the_registration_but_wait_does_not() -> None:
    svc, app, adb, reg = service(min_interval=0)
    await svc.routed(offline_message())
    await run_jobs(svc)
    answer(svc, app.got[0], "error", "wait")
    assert svc.registrations == {reg.owner: [reg]}
    await svc.routed(offline_message())
    await run_jobs(svc)
    answer(svc, app.got[1], "error", "cancel")
    assert svc.registrations == {}
    await run_jobs(svc)
    assert adb.calls == [("remove", reg.owner, reg.jid, reg.node)]
    await svc.routed(offline_message())
    await run_jobs(svc)
    assert len(app.got) == 2
