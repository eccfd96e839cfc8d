"""XEP-0398 against a real ``xmppd serve``: a new client (slixmpp xep_0084 over PEP, with
``+notify``) and an old one (xep_0054 vCards, reading XEP-0153 hashes from presence) see
one avatar, over real sockets; and the bad input (an image too big for a vCard,
malformed base64, a data item that does not match its id) converts nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.slix import Client, befriend, login, login_with_caps, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

VCARD = "vcard-temp"
UPDATE = "vcard-temp:x:update"
EVENT = "http://jabber.org/protocol/pubsub#event"
META = "urn:xmpp:avatar:metadata"
DATA = "urn:xmpp:avatar:data"
FEATURE = "urn:xmpp:pep-vcard-conversion:0"
ROOM = "sax@conference.localhost"  # the default room
PEP_PLUGINS = ["xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084"]


def png(width: int, height: int, padding: int = 0) -> bytes:
    """A PNG header (enough for the size sniffing) and ``padding`` bytes after it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * (4 + padding)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - the XEP id


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(
        tmp_path,
        users=("alice", "bob"),
        pep={"max_payload_bytes": 8192},
        vcard={"max_size": 2048, "max_avatar_bytes": 1024},
    ) as srv:
        yield srv


async def _pep(server: XmppdProcess, jid: str) -> Client:
    """A new client: caps with ``urn:xmpp:avatar:metadata+notify``."""
    return await login_with_caps(server, jid, PEP_PLUGINS)


def _metadata_events(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    path = MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event")

    def seen(msg: Any) -> None:
        items = msg.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
        if items is not None and items.get("node") == META:
            queue.put_nowait(msg.xml)

    client.register_handler(Callback("avatar events", path, seen))
    return queue


async def _photo_hash(client: Client, sender: str, status: str) -> str | None:
    """The XEP-0153 hash in the available presence from ``sender`` with ``status``."""
    pres = await client.next_presence(
        match=lambda p: p["from"].bare == sender and p["status"] == status, timeout=5
    )
    return pres.xml.findtext(f"{{{UPDATE}}}x/{{{UPDATE}}}photo")


def _join(client: Client, nick: str, status: str | None = None) -> None:
    """XEP-0045 §7.2.1: directed presence with ``<x xmlns='…muc'/>``."""
    pres = client.make_presence(pto=f"{ROOM}/{nick}", pstatus=status)
    pres.append(ET.Element("{http://jabber.org/protocol/muc}x"))
    pres.send()


async def _vcard_photo(client: Client, jid: str) -> tuple[str | None, bytes | None]:
    iq = await client.plugin["xep_0054"].get_vcard(jid)
    photo = iq.xml.find(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO")
    if photo is None:
        return None, None
    binval = photo.findtext(f"{{{VCARD}}}BINVAL")
    return photo.findtext(f"{{{VCARD}}}TYPE"), base64.b64decode(binval) if binval else None


async def _set_vcard(client: Client, mime: str, binval: str) -> str:
    iq = client.make_iq_set()
    iq.append(
        ET.fromstring(
            f"<vCard xmlns='{VCARD}'><FN>Bob</FN><PHOTO><TYPE>{mime}</TYPE>"
            f"<BINVAL>{binval}</BINVAL></PHOTO></vCard>"
        )
    )
    return str((await iq.send(timeout=5))["type"])


async def _quiet(queue: asyncio.Queue[Any], seconds: float = 0.8) -> bool:
    try:
        await asyncio.wait_for(queue.get(), seconds)
    except TimeoutError:
        return True
    return False


def test_pep_avatar_becomes_vcard_photo_and_presence_hash(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _pep(server, "alice@localhost/phone")
        bob = await login(
            server, "bob@localhost/pidgin", plugins=["xep_0054", "xep_0060", "xep_0084"]
        )
        await befriend(alice, bob)
        info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
        out["feature"] = FEATURE in info["disco_info"]["features"]

        data = png(48, 40, padding=200)
        await alice.plugin["xep_0084"].publish_avatar(data)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": sha1(data), "type": "image/png", "bytes": len(data)}]
        )
        out["vcard"] = await _vcard_photo(bob, "alice@localhost")
        alice.send_presence(pstatus="new avatar")
        out["hash"] = await _photo_hash(bob, "alice@localhost", "new avatar")
        # §4: directed presence too — a MUC join carries the hash to the occupants
        _join(bob, "bob")
        await bob.next_presence(match=lambda p: p["from"] == f"{ROOM}/bob", timeout=5)
        _join(alice, "alice", "joining")
        out["muc_hash"] = await _photo_hash(bob, ROOM, "joining")

        # too big for a 2048-byte vCard (but within [pep]): PEP keeps it, the vCard
        # keeps the last avatar that fitted, and presence keeps announcing that one
        big = png(300, 300, padding=3000)
        await alice.plugin["xep_0084"].publish_avatar(big)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": sha1(big), "type": "image/png", "bytes": len(big)}]
        )
        got = await bob.plugin["xep_0084"].retrieve_avatar("alice@localhost", sha1(big))
        out["big_in_pep"] = got["pubsub"]["items"]["item"]["avatar_data"]["value"] == big
        out["vcard_after_big"] = await _vcard_photo(bob, "alice@localhost")

        # metadata naming a data item whose bytes do not match its id: nothing converted
        await alice.plugin["xep_0084"].publish_avatar(b"\x89PNG other")
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": sha1(b"\x89PNG other"), "type": "image/png", "bytes": 10}]
        )
        fake = "0" * 40
        pubsub = alice.plugin["xep_0060"]
        payload = ET.fromstring(f"<data xmlns='{DATA}'>{base64.b64encode(b'x').decode()}</data>")
        await pubsub.publish("alice@localhost", DATA, id=fake, payload=payload)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": fake, "type": "image/png", "bytes": 1}]
        )
        out["vcard_after_fake"] = await _vcard_photo(bob, "alice@localhost")
        for client in (alice, bob):
            await client.close()
        return out

    out = run(scenario)
    data = png(48, 40, padding=200)
    other = b"\x89PNG other"
    assert out["feature"] is True
    assert out["vcard"] == ("image/png", data)
    assert out["hash"] == sha1(data)
    assert out["muc_hash"] == sha1(data)
    assert out["big_in_pep"] is True
    assert out["vcard_after_big"] == ("image/png", data)
    assert out["vcard_after_fake"] == ("image/png", other)


def test_vcard_photo_becomes_pep_avatar_with_notification(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice = await _pep(server, "alice@localhost/phone")
        events = _metadata_events(alice)
        bob = await login(
            server, "bob@localhost/pidgin", plugins=["xep_0054", "xep_0060", "xep_0084"]
        )
        await befriend(alice, bob)

        data = png(32, 16, padding=100)
        out["set"] = await _set_vcard(bob, "image/png", base64.b64encode(data).decode())
        event = await asyncio.wait_for(events.get(), 5)
        info = event.find(f".//{{{META}}}info")
        out["info"] = None if info is None else dict(info.attrib)
        got = await alice.plugin["xep_0084"].retrieve_avatar("bob@localhost", sha1(data))
        out["data"] = got["pubsub"]["items"]["item"]["avatar_data"]["value"]
        bob.send_presence(pstatus="back")
        out["hash"] = await _photo_hash(alice, "bob@localhost", "back")

        # malformed base64: the vCard is stored (XEP-0054 does not look inside), no PEP
        out["bad_set"] = await _set_vcard(bob, "image/png", "not*base64!")
        out["bad_quiet"] = await _quiet(events)
        meta = await alice.plugin["xep_0060"].get_items("bob@localhost", META)
        item = meta["pubsub"]["items"]["substanzas"][-1]
        out["meta_after_bad"] = item.xml.find(f"{{{META}}}metadata/{{{META}}}info").get("id")
        # a vCard without PHOTO (an old client editing its name) leaves the PEP avatar
        plain = bob.make_iq_set()
        plain.append(ET.fromstring(f"<vCard xmlns='{VCARD}'><FN>Bobby</FN></vCard>"))
        await plain.send(timeout=5)
        out["no_photo_quiet"] = await _quiet(events)
        meta = await alice.plugin["xep_0060"].get_items("bob@localhost", META)
        item = meta["pubsub"]["items"]["substanzas"][-1]
        out["meta_after_plain"] = item.xml.find(f"{{{META}}}metadata/{{{META}}}info").get("id")
        for client in (alice, bob):
            await client.close()
        return out

    out = run(scenario)
    data = png(32, 16, padding=100)
    assert out["set"] == "result"
    assert out["info"] == {
        "id": sha1(data),
        "bytes": str(len(data)),
        "type": "image/png",
        "width": "32",
        "height": "16",
    }
    assert out["data"] == data
    assert out["hash"] == sha1(data)
    assert out["bad_set"] == "result"
    assert out["bad_quiet"] is True
    assert out["meta_after_bad"] == sha1(data)
    assert out["no_photo_quiet"] is True
    assert out["meta_after_plain"] == sha1(data)
