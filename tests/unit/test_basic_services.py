"""disco (XEP-0030/0128), ping (XEP-0199), version (XEP-0092) and time (XEP-0202).

Each test routes one stanza through a real Router from a bound session whose outbox
captures bytes, then parses the reply back and checks it exactly.
"""

from __future__ import annotations

from lxml import etree

from xmppd.jid import JID
from xmppd.router import Router
from xmppd.services.basic import install_basic_services
from xmppd.services.disco import DiscoService
from xmppd.services.time import xep82_datetime
from xmppd.session import Session
from xmppd.xml import ns

DOMAIN = "example.org"
JULIET = "juliet@example.org/balcony"
CLIENT = "{%s}" % ns.CLIENT
INFO = "{%s}" % ns.DISCO_INFO
ITEMS = "{%s}" % ns.DISCO_ITEMS
STANZAS = "{%s}" % ns.STANZA_ERRORS
FIXED_NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def enqueue(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        pass


class FakeAccounts:
    def __init__(self, *names: str) -> None:
        self.names = set(names)

    async def user_exists(self, localpart: str) -> bool:
        return localpart in self.names


class Harness:
    """A router with the basic services and Juliet bound as ``juliet@example.org/balcony``."""

    def __init__(self, **options: object) -> None:
        self.router = Router(DOMAIN, FakeAccounts("juliet", "romeo"))
        self.now = FIXED_NOW
        kwargs: dict = {"version": "1.2.3", "clock": lambda: self.now}
        kwargs.update(options)
        self.disco: DiscoService = install_basic_services(self.router, **kwargs)
        self.outbox = FakeOutbox()
        self.session = Session(JID.parse(JULIET), self.outbox)
        self.router.bind(self.session)

    async def ask(self, xml: str) -> etree._Element:
        """Route ``xml`` (stamped from Juliet) and return the single reply."""
        stanza = etree.fromstring(xml)
        stanza.set("from", JULIET)
        self.outbox.sent.clear()
        await self.router.route(stanza, self.session)
        assert len(self.outbox.sent) == 1, self.outbox.sent
        return etree.fromstring(self.outbox.sent[0])


def iq(payload: str, *, to: str | None = DOMAIN, type_: str = "get", id_: str = "q1") -> str:
    to_attr = f" to='{to}'" if to is not None else ""
    return f"<iq xmlns='jabber:client' type='{type_}' id='{id_}'{to_attr}>{payload}</iq>"


DISCO_INFO = f"<query xmlns='{ns.DISCO_INFO}'/>"
DISCO_ITEMS = f"<query xmlns='{ns.DISCO_ITEMS}'/>"
PING = f"<ping xmlns='{ns.PING}'/>"
VERSION = f"<query xmlns='{ns.VERSION}'/>"
TIME = f"<time xmlns='{ns.TIME}'/>"


def assert_result(reply: etree._Element, *, from_: str, id_: str = "q1") -> None:
    assert reply.tag == CLIENT + "iq"
    assert reply.get("type") == "result"
    assert reply.get("id") == id_
    assert reply.get("to") == JULIET
    assert reply.get("from") == from_


def assert_error(reply: etree._Element, condition: str, *, type_: str = "cancel") -> None:
    assert reply.tag == CLIENT + "iq"
    assert reply.get("type") == "error"
    assert reply.get("id") == "q1"
    assert reply.get("to") == JULIET
    (error,) = reply.findall(CLIENT + "error")
    assert error.get("type") == type_
    assert error[0].tag == STANZAS + condition


# ------------------------------------------------------------------- disco#info
async def test_server_info_lists_identity_and_every_installed_feature() -> None:
    h = Harness()
    h.router.features.add("http://jabber.org/protocol/muc")  # a service installed later
    h.router.features.add(ns.ROSTER_VER)  # a stream feature, never a disco feature
    reply = await h.ask(iq(DISCO_INFO))
    assert_result(reply, from_=DOMAIN)
    (query,) = reply
    assert query.tag == INFO + "query"
    assert query.get("node") is None
    identities = [dict(el.attrib) for el in query.findall(INFO + "identity")]
    assert identities == [{"category": "server", "type": "im", "name": "xmppd"}]
    features = [el.get("var") for el in query.findall(INFO + "feature")]
    assert features == sorted(
        [
            ns.DISCO_INFO,
            ns.DISCO_ITEMS,
            ns.PING,
            ns.VERSION,
            ns.TIME,
            "http://jabber.org/protocol/muc",
        ]
    )
    assert len(query) == 1 + len(features)


async def test_server_name_option_changes_identity_name() -> None:
    h = Harness(server_name="forum chat")
    reply = await h.ask(iq(DISCO_INFO))
    assert reply[0].find(INFO + "identity").get("name") == "forum chat"


async def test_server_info_with_unknown_node_is_item_not_found() -> None:
    h = Harness()
    reply = await h.ask(iq(f"<query xmlns='{ns.DISCO_INFO}' node='nope'/>"))
    assert_error(reply, "item-not-found")
    assert reply.get("from") == DOMAIN


async def test_extended_info_form_is_appended_to_every_reply() -> None:
    form = etree.fromstring(
        "<x xmlns='jabber:x:data' type='result'>"
        "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value>"
        "</field><field var='admin-addresses'><value>xmpp:admin@example.org</value></field></x>"
    )
    h = Harness(extensions=[form])
    for _ in range(2):  # a second request must still carry the form (no moved element)
        reply = await h.ask(iq(DISCO_INFO))
        (x,) = reply[0].findall("{jabber:x:data}x")
        assert x.get("type") == "result"
        values = [v.text for v in x.iter("{jabber:x:data}value")]
        assert values == ["http://jabber.org/network/serverinfo", "xmpp:admin@example.org"]
    # Replies built by the handler each own their copy: building a second one must not
    # take the form out of the first (lxml moves an element on append).
    request = etree.fromstring(iq(DISCO_INFO))
    request.set("from", JULIET)
    first = await h.disco.handle_info(request, h.session, h.router)
    second = await h.disco.handle_info(request, h.session, h.router)
    assert len(first[0].findall("{jabber:x:data}x")) == 1
    assert len(second[0].findall("{jabber:x:data}x")) == 1


def test_extension_that_is_not_a_result_form_is_refused() -> None:
    bad = etree.fromstring("<x xmlns='jabber:x:data' type='form'/>")
    try:
        DiscoService(extensions=[bad])
    except ValueError:
        return
    raise AssertionError("a non-result form was accepted")


async def test_account_info_without_to_is_registered_account() -> None:
    h = Harness()
    reply = await h.ask(iq(DISCO_INFO, to=None))
    assert_result(reply, from_="juliet@example.org")
    (query,) = reply
    identities = [dict(el.attrib) for el in query.findall(INFO + "identity")]
    assert identities == [{"category": "account", "type": "registered"}]
    features = [el.get("var") for el in query.findall(INFO + "feature")]
    assert features == [ns.DISCO_INFO, ns.DISCO_ITEMS]


async def test_account_info_to_own_bare_jid() -> None:
    h = Harness()
    reply = await h.ask(iq(DISCO_INFO, to="juliet@example.org"))
    assert_result(reply, from_="juliet@example.org")
    assert reply[0].find(INFO + "identity").get("category") == "account"


async def test_account_info_with_node_is_item_not_found() -> None:
    h = Harness()
    reply = await h.ask(iq(f"<query xmlns='{ns.DISCO_INFO}' node='x'/>", to=None))
    assert_error(reply, "item-not-found")


async def test_other_account_info_is_hidden_without_presence_authorisation() -> None:
    h = Harness()
    reply = await h.ask(iq(DISCO_INFO, to="romeo@example.org"))
    assert_error(reply, "service-unavailable")
    assert reply.get("from") == "romeo@example.org"


async def test_other_account_info_follows_the_presence_check() -> None:
    h = Harness()
    asked: list[tuple[JID, JID]] = []
    allowed = {"romeo@example.org"}

    async def check(requester: JID, account: JID) -> bool:
        asked.append((requester, account))
        return str(account) in allowed

    h.disco.presence_authorized = check
    reply = await h.ask(iq(DISCO_INFO, to="romeo@example.org"))
    assert_result(reply, from_="romeo@example.org")
    assert reply[0].find(INFO + "identity").get("type") == "registered"
    assert asked == [(JID.parse("juliet@example.org"), JID.parse("romeo@example.org"))]

    allowed.clear()
    reply = await h.ask(iq(DISCO_INFO, to="romeo@example.org"))
    assert_error(reply, "service-unavailable")


async def test_info_for_missing_account_is_service_unavailable() -> None:
    h = Harness()
    reply = await h.ask(iq(DISCO_INFO, to="nobody@example.org"))
    assert_error(reply, "service-unavailable")


async def test_disco_set_is_service_unavailable() -> None:
    h = Harness()
    reply = await h.ask(iq(DISCO_INFO, type_="set"))
    assert_error(reply, "service-unavailable")


# ------------------------------------------------------------------ disco#items
async def test_server_items_come_from_router_disco_items() -> None:
    h = Harness()
    h.router.disco_items["rooms.example.org"] = "Chatrooms"
    h.router.disco_items["irc.example.org"] = None
    reply = await h.ask(iq(DISCO_ITEMS))
    assert_result(reply, from_=DOMAIN)
    (query,) = reply
    assert query.tag == ITEMS + "query"
    items = [dict(el.attrib) for el in query]
    assert items == [
        {"jid": "irc.example.org"},
        {"jid": "rooms.example.org", "name": "Chatrooms"},
    ]
    assert all(el.tag == ITEMS + "item" for el in query)


async def test_server_items_empty_is_an_empty_query_not_an_error() -> None:
    h = Harness()
    reply = await h.ask(iq(DISCO_ITEMS))
    assert_result(reply, from_=DOMAIN)
    assert reply[0].tag == ITEMS + "query"
    assert len(reply[0]) == 0


async def test_server_items_with_unknown_node_is_item_not_found() -> None:
    h = Harness()
    reply = await h.ask(iq(f"<query xmlns='{ns.DISCO_ITEMS}' node='rooms'/>"))
    assert_error(reply, "item-not-found")


async def test_account_items_are_empty_for_everyone() -> None:
    h = Harness()
    for to in (None, "juliet@example.org", "romeo@example.org"):
        reply = await h.ask(iq(f"<query xmlns='{ns.DISCO_ITEMS}' node='n'/>", to=to))
        assert_result(reply, from_=to or "juliet@example.org")
        assert reply[0].get("node") == "n"
        assert len(reply[0]) == 0


# ------------------------------------------------------------------------- ping
async def test_ping_to_server_is_an_empty_result() -> None:
    h = Harness()
    reply = await h.ask(iq(PING, id_="p1"))
    assert_result(reply, from_=DOMAIN, id_="p1")
    assert len(reply) == 0


async def test_ping_to_own_account() -> None:
    h = Harness()
    for to in (None, "juliet@example.org"):
        reply = await h.ask(iq(PING, to=to))
        assert_result(reply, from_="juliet@example.org")
        assert len(reply) == 0


async def test_ping_to_another_account_is_not_answered_on_its_behalf() -> None:
    h = Harness()
    reply = await h.ask(iq(PING, to="romeo@example.org"))
    assert_error(reply, "service-unavailable")


# ---------------------------------------------------------------------- version
async def test_version_without_os_by_default() -> None:
    h = Harness()
    reply = await h.ask(iq(VERSION))
    assert_result(reply, from_=DOMAIN)
    (query,) = reply
    assert query.tag == "{%s}query" % ns.VERSION
    assert [(el.tag.split("}")[1], el.text) for el in query] == [
        ("name", "xmppd"),
        ("version", "1.2.3"),
    ]


async def test_version_includes_os_when_configured() -> None:
    h = Harness(os_name="Linux")
    reply = await h.ask(iq(VERSION))
    assert [(el.tag.split("}")[1], el.text) for el in reply[0]] == [
        ("name", "xmppd"),
        ("version", "1.2.3"),
        ("os", "Linux"),
    ]


async def test_version_of_an_account_is_service_unavailable() -> None:
    h = Harness()
    for to in (None, "romeo@example.org"):
        reply = await h.ask(iq(VERSION, to=to))
        assert_error(reply, "service-unavailable")


# ------------------------------------------------------------------------- time
async def test_time_reports_utc_from_the_clock() -> None:
    h = Harness()
    reply = await h.ask(iq(TIME))
    assert_result(reply, from_=DOMAIN)
    (payload,) = reply
    assert payload.tag == "{%s}time" % ns.TIME
    assert [(el.tag.split("}")[1], el.text) for el in payload] == [
        ("tzo", "+00:00"),
        ("utc", "2023-11-14T22:13:20Z"),
    ]
    h.now = FIXED_NOW + 61.25
    reply = await h.ask(iq(TIME))
    assert reply[0].findtext("{%s}utc" % ns.TIME) == "2023-11-14T22:14:21.250Z"


def test_xep82_datetime_format() -> None:
    assert xep82_datetime(0) == "1970-01-01T00:00:00Z"
    assert xep82_datetime(951782400.5) == "2000-02-29T00:00:00.500Z"


async def test_time_set_is_service_unavailable() -> None:
    h = Harness()
    reply = await h.ask(iq(TIME, type_="set"))
    assert_error(reply, "service-unavailable")


# ------------------------------------------------------------- router-level errors
async def test_two_payloads_is_bad_request() -> None:
    h = Harness()
    reply = await h.ask(iq(PING + PING))
    assert_error(reply, "bad-request", type_="modify")
    assert reply.get("from") == DOMAIN


async def test_unknown_payload_is_service_unavailable() -> None:
    h = Harness()
    reply = await h.ask(iq("<query xmlns='urn:example:unknown'/>"))
    assert_error(reply, "service-unavailable")
    assert reply.get("from") == DOMAIN


async def test_result_addressed_to_server_gets_no_answer() -> None:
    h = Harness()
    stanza = etree.fromstring(iq(PING, type_="result"))
    stanza.set("from", JULIET)
    await h.router.route(stanza, h.session)
    assert h.outbox.sent == []
