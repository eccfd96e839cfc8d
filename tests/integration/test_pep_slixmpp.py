"""XEP-0163 PEP against a real ``xmppd serve``, with slixmpp's pubsub plugins over real
sockets: XEP-0084 avatars with caps-filtered notifications (XEP-0115) to a contact, the
last item on presence, XEP-0402 bookmarks (whitelist, ``max_items=max``), XEP-0223 private
storage, persistence across a restart, and bad input (each gets XEP-0060's error)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004.stanza import Form
from slixmpp.xmlstream import ET, ElementBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.slix import Client, befriend, login_with_caps, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

PUBSUB = "http://jabber.org/protocol/pubsub"
ERRORS = PUBSUB + "#errors"
EVENT = PUBSUB + "#event"
AVATAR_META = "urn:xmpp:avatar:metadata"
AVATAR_DATA = "urn:xmpp:avatar:data"
BOOKMARKS = "urn:xmpp:bookmarks:1"
PEP_PLUGINS = ["xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0223"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(
        tmp_path,
        users=("alice", "bob", "carol"),
        pep={"max_payload_bytes": 4096, "max_items": 50, "max_nodes": 8},
        limits={"max_stanza_size": 10_000},
    ) as srv:
        yield srv


async def _pep(server: XmppdProcess, jid: str, interests: tuple[str, ...] = ()) -> Client:
    """A client with caps and ``+notify`` for avatar metadata (and ``interests``)."""
    return await login_with_caps(server, jid, PEP_PLUGINS, interests)


def _events(client: Client) -> asyncio.Queue[Any]:
    """Every pubsub ``#event`` message ``client`` gets, as the raw element."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    path = MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event")
    client.register_handler(Callback("pep events", path, lambda msg: queue.put_nowait(msg.xml)))
    return queue


async def _next_event(queue: asyncio.Queue[Any], node: str, timeout: float = 5) -> Any:
    while True:
        msg = await asyncio.wait_for(queue.get(), timeout)
        items = msg.find(f"{{{EVENT}}}event/*")
        if items is not None and items.get("node") == node:
            return msg


async def _quiet(queue: asyncio.Queue[Any], seconds: float = 0.6) -> bool:
    try:
        await asyncio.wait_for(queue.get(), seconds)
    except TimeoutError:
        return True
    return False


def _options(**fields: str) -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBSUB + "#publish-options")
    for var, value in fields.items():
        form.add_field(var="pubsub#" + var, value=value)
    return form


class Diary(ElementBase):
    """A private payload for XEP-0223."""

    namespace = "urn:example:diary"
    name = "secret"
    plugin_attrib = "secret"
    interfaces = {"text"}

    def set_text(self, value: str) -> None:
        self.xml.text = value


def _payload(xml: str) -> Any:
    return ET.fromstring(xml)


async def _error(coro: Any) -> tuple[str, str | None]:
    """The condition and pubsub#errors child of a failed request, or ("result", None)."""
    try:
        await coro
    except IqError as exc:
        app = next((c.tag.split("}")[1] for c in exc.iq.xml.find("{jabber:client}error")
                    if c.tag.startswith(f"{{{ERRORS}}}")), None)  # fmt: skip
        return str(exc.condition), app
    return "result", None


def test_avatar_publish_notify_retrieve_and_access(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _pep(server, "alice@localhost/a")
        bob = await _pep(server, "bob@localhost/b")
        carol = await _pep(server, "carol@localhost/c")
        await befriend(alice, bob)
        info = await bob.plugin["xep_0030"].get_info(jid="alice@localhost")
        out["identity"] = ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
        out["features"] = {
            PUBSUB + "#publish-options",
            PUBSUB + "#auto-create",
        } <= set(info["disco_info"]["features"])
        await asyncio.sleep(0.5)  # the server resolves bob's caps
        bob_events, carol_events = _events(bob), _events(carol)
        data = b"\x89PNG fake avatar bytes"
        avatar_id = alice.plugin["xep_0084"].generate_id(data)
        await alice.plugin["xep_0084"].publish_avatar(data)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": avatar_id, "type": "image/png", "bytes": len(data)}]
        )
        event = await _next_event(bob_events, AVATAR_META)
        out["event_from"] = event.get("from")
        out["event_type"] = event.get("type")
        info_el = event.find(f".//{{{AVATAR_META}}}info")
        out["event_id"] = info_el.get("id") if info_el is not None else None
        out["carol_quiet"] = await _quiet(carol_events)
        got = await bob.plugin["xep_0084"].retrieve_avatar("alice@localhost", avatar_id)
        out["retrieved"] = got["pubsub"]["items"]["item"]["avatar_data"]["value"]
        out["carol_reads"] = await _error(
            carol.plugin["xep_0084"].retrieve_avatar("alice@localhost", avatar_id)
        )
        out["bob_publishes_to_alice"] = await _error(
            bob.plugin["xep_0060"].publish(
                "alice@localhost", AVATAR_DATA, payload=_payload(f"<data xmlns='{AVATAR_DATA}'/>")
            )
        )
        for client in (alice, bob, carol):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["identity"] and out["features"]
    assert out["event_from"] == "alice@localhost" and out["event_type"] == "headline"
    assert out["event_id"] is not None
    assert out["carol_quiet"]
    assert out["retrieved"] == b"\x89PNG fake avatar bytes"
    assert out["carol_reads"] == ("not-authorized", "presence-subscription-required")
    assert out["bob_publishes_to_alice"] == ("forbidden", None)


async def _raw(client: Client, kind: str, xml: str, to: str | None = None) -> Any:
    """An iq with ``xml`` as payload: the result's XML, or (condition, pubsub#errors child)."""
    iq = client.make_iq_set() if kind == "set" else client.make_iq_get()
    if to is not None:
        iq["to"] = to
    iq.append(ElementTree.fromstring(xml))  # noqa: S314 - the test's own literal
    try:
        result = await iq.send(timeout=5)
    except IqError as exc:
        err = exc.iq.xml.find("{jabber:client}error")
        app = next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{ERRORS}}}")), None)
        return str(exc.condition), app
    return result.xml


def _publish_xml(node: str, payload: str, item_id: str | None = None, **options: str) -> str:
    quoted = node.replace("&", "&amp;").replace("'", "&apos;")
    item = f"<item id='{item_id}'>" if item_id else "<item>"
    form = ""
    if options:
        fields = "".join(
            f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in options.items()
        )
        form = (
            "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
            f"type='hidden'><value>{PUBSUB}#publish-options</value></field>{fields}</x>"
            "</publish-options>"
        )
    return f"<pubsub xmlns='{PUBSUB}'><publish node='{quoted}'>{item}{payload}</item></publish>{form}</pubsub>"  # noqa: E501


def _item_ids(result: Any) -> list[str]:
    return [i.get("id") for i in getattr(result, "xml", result).iter(f"{{{PUBSUB}}}item")]


def test_bookmarks_are_whitelisted_and_private_storage(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _pep(server, "alice@localhost/desk", (BOOKMARKS,))
        phone = await _pep(server, "alice@localhost/phone", (BOOKMARKS,))
        bob = await _pep(server, "bob@localhost/b", (BOOKMARKS,))
        await befriend(alice, bob)
        await asyncio.sleep(0.3)
        phone_events, bob_events = _events(phone), _events(bob)
        options = {
            "persist_items": "true",
            "max_items": "max",
            "send_last_published_item": "never",
            "access_model": "whitelist",
        }
        for room, name in (("sax@conference.localhost", "Sax"), ("jazz@conference.localhost", "J")):
            conference = f"<conference xmlns='{BOOKMARKS}' name='{name}' autojoin='true'><nick>al</nick></conference>"  # noqa: E501
            out.setdefault("publish", []).append(
                await _raw(alice, "set", _publish_xml(BOOKMARKS, conference, room, **options))
            )
        event = await _next_event(phone_events, BOOKMARKS)
        out["phone_event_ids"] = [i.get("id") for i in event.iter(f"{{{EVENT}}}item")]
        out["bob_quiet"] = await _quiet(bob_events)
        got = await alice.plugin["xep_0060"].get_items(None, BOOKMARKS)
        out["items"] = [
            (i.get("id"), i.find(f"{{{BOOKMARKS}}}conference").get("name"))
            for i in got.xml.iter(f"{{{PUBSUB}}}item")
        ]
        out["bob_reads"] = await _error(
            bob.plugin["xep_0060"].get_items("alice@localhost", BOOKMARKS)
        )
        # the node is whitelist: asking for it to be open is a precondition not met
        out["mismatch"] = await _raw(
            alice,
            "set",
            _publish_xml(
                BOOKMARKS, f"<conference xmlns='{BOOKMARKS}'/>", "x@y", access_model="open"
            ),
        )
        # XEP-0223 private storage through slixmpp's plugin
        secret = Diary()
        secret["text"] = "dear diary"
        await alice.plugin["xep_0223"].store(secret, node="urn:example:diary", id="current")
        back = await alice.plugin["xep_0223"].retrieve("urn:example:diary", id="current")
        out["private"] = getattr(back, "xml", back).findtext(".//{urn:example:diary}secret")
        out["private_bob"] = await _error(
            bob.plugin["xep_0060"].get_items("alice@localhost", "urn:example:diary")
        )
        conf = await alice.plugin["xep_0060"].get_node_config(None, "urn:example:diary")
        fields = conf["pubsub_owner"]["configure"]["form"].get_fields()
        out["private_access"] = fields["pubsub#access_model"]["value"]
        for client in (alice, phone, bob):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert all(_item_ids(r) for r in out["publish"])
    assert out["phone_event_ids"] == ["sax@conference.localhost"]
    assert out["bob_quiet"]
    assert out["items"] == [("sax@conference.localhost", "Sax"), ("jazz@conference.localhost", "J")]
    assert out["bob_reads"] == ("not-allowed", "closed-node")
    assert out["mismatch"] == ("conflict", "precondition-not-met")
    assert out["private"] == "dear diary"
    assert out["private_bob"] == ("not-allowed", "closed-node")
    assert out["private_access"] == "whitelist"


def test_last_item_on_presence_survives_a_restart(server: XmppdProcess) -> None:
    async def before() -> None:
        alice = await _pep(server, "alice@localhost/a")
        bob = await _pep(server, "bob@localhost/b")
        await befriend(alice, bob)
        meta = f"<metadata xmlns='{AVATAR_META}'><info id='abc' bytes='3' type='image/png'/></metadata>"  # noqa: E501
        await _raw(alice, "set", _publish_xml(AVATAR_META, meta, "abc"))
        for client in (alice, bob):
            await client.close()

    async def after() -> dict[str, Any]:
        out: dict[str, Any] = {}
        bob = Client("bob@localhost/b2", "secret", PEP_PLUGINS)
        events = _events(bob)
        bob.plugin["feature_mechanisms"].unencrypted_plain = True
        bob.connect(host="127.0.0.1", port=server.port)
        await asyncio.wait_for(bob.started, 10)
        await bob.plugin["xep_0115"].update_caps(broadcast=False)
        bob.send_presence()
        event = await _next_event(events, AVATAR_META)
        out["from"] = event.get("from")
        out["delayed"] = event.find("{urn:xmpp:delay}delay") is not None
        out["id"] = [i.get("id") for i in event.iter(f"{{{EVENT}}}item")]
        carol = await _pep(server, "carol@localhost/c")
        carol_events = _events(carol)
        out["carol_quiet"] = await _quiet(carol_events)
        for client in (bob, carol):
            await client.close()
        return out

    run(before, timeout=40)
    server.restart()
    out = run(after, timeout=40)
    assert out["from"] == "alice@localhost"
    assert out["delayed"] and out["id"] == ["abc"]
    assert out["carol_quiet"]


def test_bad_input_gets_the_xeps_errors_and_stores_nothing(server: XmppdProcess) -> None:
    odd_names = ["a/b/c", "with spaces  ", "ünï/cødé ✓ 日本", "x" * 256]
    notes = "urn:example:notes"

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _pep(server, "alice@localhost/a", (notes,))
        other = await _pep(server, "alice@localhost/other", (notes,))
        bob = await _pep(server, "bob@localhost/b")
        await asyncio.sleep(0.3)
        events = _events(other)
        note = f"<note xmlns='{notes}'>hi</note>"
        big = f"<note xmlns='{notes}'>{'x' * 5000}</note>"
        out["too_big"] = await _raw(alice, "set", _publish_xml("big", big))
        out["too_big_stored"] = await _raw(
            alice, "get", f"<pubsub xmlns='{PUBSUB}'><items node='big'/></pubsub>"
        )
        two = f"<note xmlns='{notes}'/><note xmlns='{notes}'/>"
        out["two_payloads"] = await _raw(alice, "set", _publish_xml(notes, two))
        out["no_payload"] = await _raw(alice, "set", _publish_xml(notes, ""))
        out["no_node"] = await _raw(
            alice,
            "set",
            f"<pubsub xmlns='{PUBSUB}'><publish><item>{note}</item></publish></pubsub>",
        )
        out["long_name"] = await _raw(alice, "set", _publish_xml("n" * 3000, note))
        # an absurd max_items is clamped to [pep] max_items (50 here)
        out["absurd"] = await _raw(
            alice, "set", _publish_xml(notes, note, "1", max_items="1000000000")
        )
        conf = await alice.plugin["xep_0060"].get_node_config(None, notes)
        out["max_items"] = conf["pubsub_owner"]["configure"]["form"].get_fields()[
            "pubsub#max_items"
        ]["value"]
        out["bad_max"] = await _raw(
            alice,
            "get",
            f"<pubsub xmlns='{PUBSUB}'><items node='{notes}' max_items='-3'/></pubsub>",
        )
        await asyncio.wait_for(events.get(), 5)  # the notification of item 1
        await _raw(alice, "set", _publish_xml(notes, note, "2"))
        await asyncio.wait_for(events.get(), 5)
        last = await _raw(
            alice, "get", f"<pubsub xmlns='{PUBSUB}'><items node='{notes}' max_items='1'/></pubsub>"
        )
        out["last"] = _item_ids(last)
        # retract notifies (notify_retract is on by default)
        out["retract"] = await _raw(
            alice,
            "set",
            f"<pubsub xmlns='{PUBSUB}'><retract node='{notes}'><item id='1'/></retract></pubsub>",
        )
        retract = await asyncio.wait_for(events.get(), 5)
        out["retracted"] = [r.get("id") for r in retract.iter(f"{{{EVENT}}}retract")]
        out["retract_again"] = await _raw(
            alice,
            "set",
            f"<pubsub xmlns='{PUBSUB}'><retract node='{notes}'><item id='1'/></retract></pubsub>",
        )
        # text after the payload element is not part of the payload (nor breaks the event)
        await _raw(alice, "set", _publish_xml(notes, note + "trailing text", "t"))
        tail = await asyncio.wait_for(events.get(), 5)
        out["tail"] = [(i.get("id"), i.text, i[0].tail) for i in tail.iter(f"{{{EVENT}}}item")]
        # odd node names are stored as given
        for name in odd_names:
            await _raw(alice, "set", _publish_xml(name, note, "k"))
        listed = await alice.plugin["xep_0030"].get_items(jid="alice@localhost")
        out["listed"] = {n for _j, n, _name in listed["disco_items"]["items"]}
        out["odd_read"] = [
            _item_ids(await alice.plugin["xep_0060"].get_items(None, name)) for name in odd_names
        ]
        out["bob_lists"] = (await bob.plugin["xep_0030"].get_items(jid="alice@localhost"))[
            "disco_items"
        ]["items"]
        # another account's PEP: publishing is forbidden, owner requests too
        out["bob_publishes"] = await _raw(
            bob, "set", _publish_xml(notes, note), to="alice@localhost"
        )
        out["bob_purges"] = await _raw(
            bob,
            "set",
            f"<pubsub xmlns='{PUBSUB}#owner'><purge node='{notes}'/></pubsub>",
            to="alice@localhost",
        )
        out["bob_reads_missing"] = await _raw(
            bob,
            "get",
            f"<pubsub xmlns='{PUBSUB}'><items node='nope'/></pubsub>",
            to="alice@localhost",
        )
        out["domain"] = await _raw(
            alice, "get", f"<pubsub xmlns='{PUBSUB}'><items node='x'/></pubsub>", to="localhost"
        )
        # node limit (8 here): big was never created; notes + 4 odd = 5 nodes; 3 more fit
        for i in range(3):
            await _raw(alice, "set", _publish_xml(f"fill{i}", note))
        out["ninth"] = await _raw(alice, "set", _publish_xml("ninth", note))
        # explicit create (with a configure form); creating it again is a conflict
        form = Form()
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBSUB + "#node_config")
        form.add_field(var="pubsub#access_model", value="open")
        await alice.plugin["xep_0060"].delete_node(None, "fill1")
        await alice.plugin["xep_0060"].create_node(None, "made", config=form)
        made = await alice.plugin["xep_0060"].get_node_config(None, "made")
        out["made"] = made["pubsub_owner"]["configure"]["form"].get_fields()["pubsub#access_model"][
            "value"
        ]
        out["made_again"] = await _error(alice.plugin["xep_0060"].create_node(None, "made"))
        default = await _raw(alice, "get", f"<pubsub xmlns='{PUBSUB}#owner'><default/></pubsub>")
        out["default_fields"] = len(default.findall(".//{jabber:x:data}field"))
        # purge and delete, each notified
        out["purge"] = await _raw(
            alice, "set", f"<pubsub xmlns='{PUBSUB}#owner'><purge node='{notes}'/></pubsub>"
        )
        purge = await asyncio.wait_for(events.get(), 5)
        out["purged"] = purge.find(f"{{{EVENT}}}event/{{{EVENT}}}purge") is not None
        out["after_purge"] = _item_ids(await alice.plugin["xep_0060"].get_items(None, notes))
        out["delete"] = await _raw(
            alice, "set", f"<pubsub xmlns='{PUBSUB}#owner'><delete node='{notes}'/></pubsub>"
        )
        delete = await asyncio.wait_for(events.get(), 5)
        out["deleted"] = delete.find(f"{{{EVENT}}}event/{{{EVENT}}}delete") is not None
        out["after_delete"] = await _raw(
            alice, "get", f"<pubsub xmlns='{PUBSUB}'><items node='{notes}'/></pubsub>"
        )
        await bob.plugin["xep_0199"].ping("localhost", timeout=5)  # bob's session is unharmed
        out["still_there"] = bob.is_connected()
        # an items result carries at most limits.max_stanza_size of payloads, newest first
        await _raw(alice, "set", f"<pubsub xmlns='{PUBSUB}#owner'><delete node='fill0'/></pubsub>")
        for i in range(4):
            chunk = f"<note xmlns='{notes}'>{str(i) * 3900}</note>"
            await _raw(alice, "set", _publish_xml("bulky", chunk, f"b{i}", max_items="10"))
        out["bulky"] = _item_ids(await alice.plugin["xep_0060"].get_items(None, "bulky"))
        for client in (alice, other, bob):
            await client.close()
        return out

    out = run(scenario, timeout=90)
    assert out["too_big"] == ("not-acceptable", "payload-too-big")
    assert out["too_big_stored"] == ("item-not-found", None)
    assert out["two_payloads"] == ("bad-request", "invalid-payload")
    assert out["no_payload"] == ("bad-request", "payload-required")
    assert out["no_node"] == ("bad-request", "nodeid-required")
    assert out["long_name"][0] == "not-acceptable"
    assert _item_ids(out["absurd"]) == ["1"]
    assert out["max_items"] == "50"
    assert out["bad_max"][0] == "not-acceptable"
    assert out["last"] == ["2"]
    assert _item_ids(out["retract"]) == [] and out["retracted"] == ["1"]
    assert out["retract_again"] == ("item-not-found", None)
    assert out["tail"] == [("t", None, None)]
    assert out["listed"] == {notes, *odd_names}
    assert out["odd_read"] == [["k"]] * len(odd_names)
    assert not out["bob_lists"]
    assert out["bob_publishes"] == ("forbidden", None)
    assert out["bob_purges"] == ("forbidden", None)
    assert out["bob_reads_missing"] == ("item-not-found", None)
    assert out["domain"] == ("service-unavailable", None)
    assert out["ninth"] == ("not-allowed", "max-nodes-exceeded")
    assert out["made"] == "open" and out["made_again"] == ("conflict", None)
    assert out["default_fields"] == 6
    assert out["purge"] is not None and out["purged"] and out["after_purge"] == []
    assert out["deleted"] and out["after_delete"] == ("item-not-found", None)
    assert out["still_there"]
    assert out["bulky"] == ["b2", "b3"]


def test_server_caps_in_stream_features_verify(server: XmppdProcess) -> None:
    """XEP-0115 §6.3: slixmpp reads the server's <c/> from the stream features, asks
    disco#info at node#ver and keeps the ver only if it verifies."""

    async def scenario() -> dict[str, Any]:
        client = await _pep(server, "alice@localhost/a")
        out: dict[str, Any] = {"feature": "caps" in client.features}
        for _ in range(50):
            out["ver"] = await client.plugin["xep_0115"].get_verstring("localhost")
            if out["ver"]:
                break
            await asyncio.sleep(0.1)
        info = await client.plugin["xep_0030"].get_info(
            jid="localhost", node=f"urn:xmppd:caps#{out['ver']}"
        )
        out["identities"] = info["disco_info"]["identities"]
        await client.close()
        return out

    out = run(scenario, timeout=30)
    assert out["feature"] and out["ver"]
    assert any(i[0] == "server" and i[1] == "im" for i in out["identities"])


def test_switched_off_pep_is_not_advertised(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("alice",), pep={"enabled": False}) as srv:

        async def scenario() -> dict[str, Any]:
            alice = await _pep(srv, "alice@localhost/a")
            info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
            out = {
                "identities": [i[:2] for i in info["disco_info"]["identities"]],
                "features": [f for f in info["disco_info"]["features"] if "pubsub" in f],
                "publish": await _raw(alice, "set", _publish_xml("n", "<x xmlns='urn:x'/>")),
            }
            await alice.close()
            return out

        out = run(scenario, timeout=30)
    assert ("pubsub", "pep") not in out["identities"] and out["features"] == []
    assert out["publish"] == ("service-unavailable", None)


def test_a_new_subscriber_gets_the_last_item_at_once(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice = await _pep(server, "alice@localhost/a")
        carol = await _pep(server, "carol@localhost/c")
        meta = f"<metadata xmlns='{AVATAR_META}'><info id='av1' bytes='3' type='image/png'/></metadata>"  # noqa: E501
        await _raw(alice, "set", _publish_xml(AVATAR_META, meta, "av1"))
        await asyncio.sleep(0.3)
        events = _events(carol)
        quiet_before = await _quiet(events, 0.4)  # not a contact: nothing
        await befriend(alice, carol)
        event = await _next_event(events, AVATAR_META)
        out = {
            "quiet_before": quiet_before,
            "ids": [i.get("id") for i in event.iter(f"{{{EVENT}}}item")],
            "delayed": event.find("{urn:xmpp:delay}delay") is not None,
        }
        for client in (alice, carol):
            await client.close()
        return out

    out = run(scenario, timeout=40)
    assert out["quiet_before"] and out["ids"] == ["av1"] and out["delayed"]
