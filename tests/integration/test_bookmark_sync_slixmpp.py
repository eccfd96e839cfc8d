"""XEP-0402 §5.3 bookmark unification against a real ``xmppd serve``: a desktop client
keeping XEP-0048 bookmarks in XEP-0049 private XML and a phone using XEP-0402 PEP (with
``+notify``, slixmpp over real sockets) see one set, both ways; unchanged bookmarks send
no notification; a bookmark without a jid is not converted; contacts cannot read them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.slix import Client, login, login_with_caps, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"
BOOKMARKS = "urn:xmpp:bookmarks:1"
STORAGE = "storage:bookmarks"
PRIVATE = "jabber:iq:private"
ROOM = "chat@conference.localhost"
PEP_PLUGINS = ["xep_0004", "xep_0060", "xep_0115", "xep_0163"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(tmp_path, users=("alice", "bob"), pep={"max_items": 20}) as srv:
        yield srv


async def _phone(server: XmppdProcess, jid: str) -> Client:
    """A XEP-0402 client: ``+notify`` for the bookmarks node in its caps."""
    return await login_with_caps(server, jid, PEP_PLUGINS, (BOOKMARKS,))


def _events(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    path = MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event")
    client.register_handler(Callback("events", path, lambda msg: queue.put_nowait(msg.xml)))
    return queue


async def _raw(client: Client, kind: str, xml: str) -> Any:
    iq = client.make_iq_set() if kind == "set" else client.make_iq_get()
    iq.append(ElementTree.fromstring(xml))  # noqa: S314 - the test's own literal
    try:
        return (await iq.send(timeout=5)).xml
    except IqError as exc:
        return str(exc.condition)


async def _store(desktop: Client, conferences: str) -> Any:
    storage = f"<storage xmlns='{STORAGE}'>{conferences}</storage>"
    return await _raw(desktop, "set", f"<query xmlns='{PRIVATE}'>{storage}</query>")


async def _stored(desktop: Client) -> dict[str, dict[str, Any]]:
    """The desktop's view: jid -> (name, autojoin, nick); plus the urls under "urls"."""
    got = await _raw(
        desktop, "get", f"<query xmlns='{PRIVATE}'><storage xmlns='{STORAGE}'/></query>"
    )
    storage = got.find(f"{{{PRIVATE}}}query/{{{STORAGE}}}storage")
    out: dict[str, Any] = {
        c.get("jid"): (c.get("name"), c.get("autojoin"), c.findtext(f"{{{STORAGE}}}nick"))
        for c in storage.findall(f"{{{STORAGE}}}conference")
    }
    out["urls"] = [u.get("url") for u in storage.findall(f"{{{STORAGE}}}url")]
    return out


async def _pep_items(phone: Client) -> dict[str, tuple[str | None, str | None, str | None]]:
    got = await phone.plugin["xep_0060"].get_items(None, BOOKMARKS)
    out = {}
    for item in got.xml.iter(f"{{{PUBSUB}}}item"):
        conf = item.find(f"{{{BOOKMARKS}}}conference")
        out[item.get("id")] = (
            conf.get("name"),
            conf.get("autojoin"),
            conf.findtext(f"{{{BOOKMARKS}}}nick"),
        )
    return out


async def _event_kinds(queue: asyncio.Queue[Any], seconds: float = 1.0) -> list[tuple[str, str]]:
    """(kind, id) of every bookmarks event within ``seconds``: ("item", id) / ("retract", id)."""
    seen: list[tuple[str, str]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            msg = await asyncio.wait_for(queue.get(), left)
        except TimeoutError:
            break
        items = msg.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
        if items is None or items.get("node") != BOOKMARKS:
            continue
        for child in items:
            seen.append((child.tag.split("}")[1], child.get("id")))
    return sorted(seen)


def test_private_xml_bookmarks_become_pep_items(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        phone = await _phone(server, "alice@localhost/phone")
        events = _events(phone)
        desktop = await login(server, "alice@localhost/desktop")
        info = await phone.plugin["xep_0030"].get_info(jid="alice@localhost")
        out["feature"] = BOOKMARKS + "#compat" in info["disco_info"]["features"]
        first = (
            f"<conference jid='{ROOM}' name='Site chat' autojoin='true'><nick>al</nick>"
            "</conference>"
            "<conference jid='dev@conference.localhost' name='Dev'/>"
            "<conference name='no jid at all' autojoin='true'/>"
            "<url name='Forum' url='https://forum.example.org/'/>"
        )
        out["set1"] = await _store(desktop, first)
        out["events1"] = await _event_kinds(events)
        out["items1"] = await _pep_items(phone)
        # the configured node is owner-only (XEP-0223 / XEP-0411 §5)
        conf = await phone.plugin["xep_0060"].get_node_config(None, BOOKMARKS)
        out["access"] = conf["pubsub_owner"]["configure"]["form"]["values"]["pubsub#access_model"]
        bob = await login(server, "bob@localhost/b", plugins=["xep_0060"])
        try:
            await bob.plugin["xep_0060"].get_items("alice@localhost", BOOKMARKS)
            out["bob"] = "result"
        except IqError as exc:
            out["bob"] = exc.condition
        # same site room, dev gone, a new one: one publish, one retract, none for the site
        second = (
            f"<conference jid='{ROOM}' name='Site chat' autojoin='true'><nick>al</nick>"
            "</conference>"
            "<conference jid='jazz@conference.localhost' name='Jazz' autojoin='1'/>"
        )
        out["set2"] = await _store(desktop, second)
        out["events2"] = await _event_kinds(events)
        out["items2"] = await _pep_items(phone)
        for client in (phone, desktop, bob):
            await client.close()
        return out

    out = run(scenario)
    assert out["feature"] is True
    assert out["set1"] is not None and not isinstance(out["set1"], str)
    assert out["events1"] == [("item", ROOM), ("item", "dev@conference.localhost")]
    assert out["items1"] == {
        ROOM: ("Site chat", "true", "al"),
        "dev@conference.localhost": ("Dev", None, None),
    }
    assert out["access"] == "whitelist"
    assert out["bob"] == "not-allowed"  # XEP-0060 §6.5.9.8: whitelist, closed-node
    assert out["events2"] == [
        ("item", "jazz@conference.localhost"),
        ("retract", "dev@conference.localhost"),
    ]
    assert out["items2"] == {
        ROOM: ("Site chat", "true", "al"),
        "jazz@conference.localhost": ("Jazz", "true", None),
    }


def test_pep_bookmarks_become_private_xml(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        phone = await _phone(server, "alice@localhost/phone")
        desktop = await login(server, "alice@localhost/desktop")
        await _store(desktop, "<url name='Forum' url='https://forum.example.org/'/>")
        options = (
            "<publish-options><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>"
            "<field var='pubsub#persist_items'><value>true</value></field>"
            "<field var='pubsub#max_items'><value>max</value></field>"
            "<field var='pubsub#access_model'><value>whitelist</value></field>"
            "</x></publish-options>"
        )
        for room, name in ((ROOM, "Site chat"), ("dev@conference.localhost", "Dev")):
            payload = (
                f"<conference xmlns='{BOOKMARKS}' name='{name}' autojoin='true'>"
                "<nick>al</nick></conference>"
            )
            await _raw(
                phone,
                "set",
                f"<pubsub xmlns='{PUBSUB}'><publish node='{BOOKMARKS}'><item id='{room}'>"
                f"{payload}</item></publish>{options}</pubsub>",
            )
        out["after_publish"] = await _stored(desktop)
        await phone.plugin["xep_0060"].retract(
            None, BOOKMARKS, "dev@conference.localhost", notify=True
        )
        out["after_retract"] = await _stored(desktop)
        await phone.plugin["xep_0060"].purge(None, BOOKMARKS)
        out["after_purge"] = await _stored(desktop)
        for client in (phone, desktop):
            await client.close()
        return out

    out = run(scenario)
    assert out["after_publish"] == {
        ROOM: ("Site chat", "true", "al"),
        "dev@conference.localhost": ("Dev", "true", "al"),
        "urls": ["https://forum.example.org/"],
    }
    assert out["after_retract"] == {
        ROOM: ("Site chat", "true", "al"),
        "urls": ["https://forum.example.org/"],
    }
    assert out["after_purge"] == {"urls": ["https://forum.example.org/"]}


def test_bookmarks_stored_before_the_conversion_reach_pep_at_login(tmp_path: Path) -> None:
    """XEP-0411 §4: private XML bookmarks from before are in PEP at the first login."""
    with running_server(
        tmp_path, users=("alice",), private_storage={"bookmarks_conversion": False}
    ) as srv:

        async def before() -> Any:
            desktop = await login(srv, "alice@localhost/desktop")
            conf = f"<conference jid='{ROOM}' name='Site chat' autojoin='true'/>"
            result = await _store(desktop, conf)
            phone = await _phone(srv, "alice@localhost/phone")
            try:
                await phone.plugin["xep_0060"].get_items(None, BOOKMARKS)
                items: Any = "result"
            except IqError as exc:
                items = exc.condition
            for client in (desktop, phone):
                await client.close()
            return result is not None, items

        stored, items_before = run(before)
        srv.edit_config(lambda data: data["private_storage"].update(bookmarks_conversion=True))
        srv.restart()

        async def after() -> Any:
            phone = await _phone(srv, "alice@localhost/phone")
            await asyncio.sleep(0.3)
            items = await _pep_items(phone)
            await phone.close()
            return items

        items_after = run(after)
    assert stored is True
    assert items_before == "item-not-found"  # no conversion yet: no node
    assert items_after == {ROOM: ("Site chat", "true", None)}
