"""An independent client library, xmpp.js (@xmpp/client from npm), against a real xmppd.

xmpp.js negotiates on its own terms (its SASL choice, XEP-0198 enabled by default,
STARTTLS over TCP, RFC 7395 framing over WebSocket): the probe in
``tests/browser/xmppjs_probe.mjs`` logs in, joins the room, speaks there and to a slixmpp
user, pings and reads its roster; the test checks each outcome, and what slixmpp saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.conftest import require_program, unavailable
from tests.integration.test_pep_slixmpp import _error, _events, _next_event, _pep
from tests.slix import befriend, login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
PROBE = BROWSER_DIR / "xmppjs_probe.mjs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdProcess]:
    with running_server(tmp_path_factory.mktemp("xmppjs"), users=("alice", "bob", "carol")) as srv:
        yield srv


def _node() -> str:
    node = require_program("node", "Debian package nodejs")
    if not (BROWSER_DIR / "node_modules" / "@xmpp" / "client").is_dir():
        unavailable("xmpp.js is not installed: npm ci in tests/browser", ".ci/run does it")
    return node


def _probe(node: str, service: str) -> dict[str, object]:
    env = dict(os.environ, NODE_TLS_REJECT_UNAUTHORIZED="0")  # the test server's own cert
    proc = subprocess.run(
        [node, str(PROBE), service, "alice", "secret", ROOM, "bob@localhost"],
        cwd=BROWSER_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
    )
    outcomes: dict[str, object] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            outcomes[item["what"]] = item["value"]
    outcomes["exit"] = proc.returncode
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr)
    return outcomes


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
def test_xmppjs_logs_in_chats_in_the_room_and_with_a_user(
    server: XmppdProcess, transport: str
) -> None:
    node = _node()
    if transport == "tcp":
        service = f"xmpp://127.0.0.1:{server.port}"
    else:
        service = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    line = f"hello from xmpp.js over {service.split(':')[0]}"

    async def scenario() -> tuple[dict[str, object], list[str], list[str]]:
        bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
        in_room: list[str] = []
        chats: list[str] = []
        try:
            bob.add_event_handler("groupchat_message", lambda m: in_room.append(str(m["body"])))
            bob.add_event_handler(
                "message",
                lambda m: chats.append(str(m["body"])) if m["type"] == "chat" else None,
            )
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "bob", maxstanzas=0, timeout=10)
            outcomes = await asyncio.to_thread(_probe, node, service)
            for _ in range(50):  # the chat line may land just after the probe exits
                if chats:
                    break
                await asyncio.sleep(0.1)
        finally:
            await bob.close()
        return outcomes, in_room, chats

    outcomes, in_room, chats = run(scenario, timeout=60)
    assert outcomes["exit"] == 0, outcomes
    assert str(outcomes["online"]).startswith("alice@localhost/")
    assert outcomes["joined"] is True
    echo = outcomes["echo"]
    assert isinstance(echo, dict)
    assert echo["from"] == f"{ROOM}/alice-xmppjs"
    assert echo["stanza_id"] and echo["by"] == ROOM  # XEP-0359, stamped by the room
    assert outcomes["ping"] == "result" and outcomes["roster"] == "result"
    assert outcomes["sm"] is True  # XEP-0198 on both transports
    assert outcomes["done"] is True and "error" not in outcomes
    assert line in in_room  # a desktop client in the room saw it
    assert chats == [line]  # and the one-to-one message arrived once


MAM_PROBE = BROWSER_DIR / "xmppjs_mam_probe.mjs"


def test_xmppjs_gets_carbons_and_reads_its_archive(server: XmppdProcess) -> None:
    """xmpp.js as one resource of alice, slixmpp as another and as bob: the carbon of bob's
    message to alice's other resource, the sent carbon of xmpp.js's reply there, and the
    archive (last page, from alice's bare JID) holding both, in order."""
    node = _node()
    service = f"xmpp://127.0.0.1:{server.port}"
    env = dict(os.environ, NODE_TLS_REJECT_UNAUTHORIZED="0")

    async def scenario() -> tuple[dict[str, object], list[str]]:
        desk = await login(server, "alice@localhost/desk", plugins=["xep_0280"])
        await desk.plugin["xep_0280"].enable(timeout=5)
        sent: list[str] = []
        desk.add_event_handler("carbon_sent", lambda m: sent.append(str(m["carbon_sent"]["body"])))
        bob = await login(server, "bob@localhost/b")
        proc = await asyncio.create_subprocess_exec(
            node, str(MAM_PROBE), service, "alice", "secret", "bob@localhost",
            cwd=BROWSER_DIR, env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            # its available presence reaches alice's other resource once carbons are on
            await desk.next_presence(
                timeout=20, match=lambda p: str(p["from"]) == "alice@localhost/xmppjs"
            )
            bob.send_message(mto="alice@localhost/desk", mbody="to the desk", mtype="chat")
            stdout, _ = await asyncio.wait_for(proc.communicate(), 40)
            for _ in range(50):
                if sent:
                    break
                await asyncio.sleep(0.1)
        finally:
            if proc.returncode is None:
                proc.kill()
            await desk.close()
            await bob.close()
        outcomes: dict[str, object] = {"exit": proc.returncode}
        for line in stdout.decode().splitlines():
            if line.startswith("{"):
                item = json.loads(line)
                outcomes[item["what"]] = item["value"]
        return outcomes, sent

    outcomes, sent = run(scenario, timeout=90)
    assert outcomes["exit"] == 0, outcomes
    assert outcomes["carbons"] == "result"
    assert outcomes["carbon"] == {
        "body": "to the desk",
        "to": "alice@localhost/desk",
        "by": "alice@localhost",  # the archive id travels in the carbon too
    }
    archive = outcomes["archive"]
    assert isinstance(archive, dict)
    # the newest two (the module's other tests may have archived alice's earlier chats)
    assert archive["bodies"][-2:] == ["to the desk", "from xmpp.js"]
    assert archive["from"] == ["alice@localhost"] and archive["complete"] == "true"
    assert sent == ["from xmpp.js"]
    assert outcomes["done"] is True and "error" not in outcomes


PEP_PROBE = BROWSER_DIR / "xmppjs_pep_probe.mjs"
AVATAR_META = "urn:xmpp:avatar:metadata"
EVENT = "{http://jabber.org/protocol/pubsub#event}"


async def _pep_probe(node: str, server: XmppdProcess, mode: str, other: str) -> Any:
    """Start ``xmppjs_pep_probe.mjs MODE`` as alice over TCP (STARTTLS); the process."""
    env = dict(os.environ, NODE_TLS_REJECT_UNAUTHORIZED="0")  # the test server's own cert
    return await asyncio.create_subprocess_exec(
        node, str(PEP_PROBE), mode, f"xmpp://127.0.0.1:{server.port}", "alice", "secret", other,
        cwd=BROWSER_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _outcomes(proc: Any, timeout: float = 40) -> dict[str, Any]:
    """Wait for the probe to end; its JSON lines as {what: value}, and its exit code."""
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
    outcomes: dict[str, Any] = {"exit": proc.returncode}
    for line in stdout.decode().splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            outcomes[item["what"]] = item["value"]
    if proc.returncode != 0:
        print(stdout.decode(), stderr.decode())
    return outcomes


def test_xmppjs_avatar_with_a_contact_both_ways(server: XmppdProcess) -> None:
    """XEP-0084 over PEP with xmpp.js as alice (caps computed by the probe, XEP-0115):
    bob's last metadata item arrives once the server has learnt alice's +notify from her
    caps (XEP-0163 §4.3.2), xmpp.js fetches the data item by id; it publishes its own
    avatar, which bob (slixmpp, a contact) and alice's own resource are notified of; bob's
    next avatar reaches xmpp.js live."""
    node = _node()
    first, second = b"bob's first avatar", b"bob's second avatar"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        desk = await _pep(server, "alice@localhost/desk")
        bob = await _pep(server, "bob@localhost/b")
        seen: dict[str, Any] = {}
        try:
            await befriend(desk, bob)
            await desk.close()
            avatar = bob.plugin["xep_0084"]
            await avatar.publish_avatar(first, timeout=5)
            info = {"id": avatar.generate_id(first), "type": "image/png", "bytes": len(first)}
            await avatar.publish_avatar_metadata(info, timeout=5)
            events = _events(bob)
            proc = await _pep_probe(node, server, "avatar", "bob@localhost")
            try:
                msg = await _next_event(events, AVATAR_META, timeout=30)
                seen["from"] = msg.get("from")
                item = msg.find(f".//{EVENT}item")
                seen["id"] = item.get("id")
                await avatar.publish_avatar(second, timeout=5)
                info = {"id": avatar.generate_id(second), "type": "image/png", "bytes": len(second)}
                await avatar.publish_avatar_metadata(info, timeout=5)
            finally:
                outcomes = await _outcomes(proc)
        finally:
            await bob.close()
        return outcomes, seen

    outcomes, seen = run(scenario, timeout=90)
    first_id = hashlib.sha1(first).hexdigest()  # noqa: S324 - XEP-0084 ids are SHA-1
    assert outcomes["exit"] == 0, outcomes
    assert outcomes["contact-avatar"] == {
        "id": first_id,
        "bytes": str(len(first)),
        "type": "image/png",
    }
    assert outcomes["contact-data"] == {"id": first_id, "sha1": first_id}
    published = outcomes["published"]
    assert published["data"] == "result" and published["metadata"] == "result"
    assert outcomes["own-event"]["id"] == published["id"]
    assert seen == {"from": "alice@localhost", "id": published["id"]}  # bob, the contact
    assert outcomes["contact-update"] == {"id": hashlib.sha1(second).hexdigest()}  # noqa: S324
    assert outcomes["done"] is True and "error" not in outcomes


def test_xmppjs_bookmarks_publish_retrieve_retract(server: XmppdProcess) -> None:
    """XEP-0402 with xmpp.js: two bookmarks published with the §3.3 publish-options, each
    pushed to its own +notify resource and to alice's slixmpp resource, retrieved with
    their names, autojoin and nick, one retracted with notify; bob (not on the node's
    whitelist) cannot read them."""
    node = _node()

    async def scenario() -> tuple[dict[str, Any], list[str], Any]:
        phone = await _pep(server, "alice@localhost/phone", ("urn:xmpp:bookmarks:1",))
        bob = await login(server, "bob@localhost/b", plugins=["xep_0060"])
        events = _events(phone)
        try:
            proc = await _pep_probe(node, server, "bookmarks", ROOM)
            outcomes = await _outcomes(proc)
            pushed: list[str] = []
            while len(pushed) < 3:
                msg = await asyncio.wait_for(events.get(), 5)
                pushed += [i.get("id") for i in msg.iter(f"{EVENT}item")]
                pushed += ["-" + r.get("id") for r in msg.iter(f"{EVENT}retract")]
            bob_reads = await _error(
                bob.plugin["xep_0060"].get_items("alice@localhost", "urn:xmpp:bookmarks:1")
            )
        finally:
            await phone.close()
            await bob.close()
        return outcomes, pushed, bob_reads

    outcomes, pushed, bob_reads = run(scenario, timeout=90)
    spare = "spare@conference.localhost"
    assert outcomes["exit"] == 0, outcomes
    assert outcomes["published"] == ["result", "result"]
    assert outcomes["events"] == [[[ROOM, "The site room"]], [[spare, "Spare"]]]
    assert outcomes["items"] == [
        {"id": ROOM, "name": "The site room", "autojoin": "true", "nick": "al"},
        {"id": spare, "name": "Spare", "autojoin": "true", "nick": "al2"},
    ]
    assert outcomes["retracted"] == {"iq": "result", "event": [spare]}
    assert outcomes["left"] == [ROOM]
    assert pushed == [ROOM, spare, "-" + spare]  # the other resource followed along
    assert bob_reads == ("not-allowed", "closed-node")  # XEP-0060 §6.5.9, not on the whitelist
    assert outcomes["done"] is True and "error" not in outcomes


def test_xmppjs_pages_through_its_archive(server: XmppdProcess) -> None:
    """XEP-0313 + XEP-0059 with xmpp.js: carol's seven chats, paged forwards three at a
    time with <after/> until complete, backwards from an empty <before/>, an absurd max
    cut to the server's limit, a negative one refused (bad-request)."""
    node = _node()
    lines = [f"page line {i}" for i in range(1, 8)]

    async def scenario() -> dict[str, Any]:
        carol = await login(server, "carol@localhost/c")
        desk = await login(server, "alice@localhost/desk")
        try:
            for line in lines:
                carol.send_message(mto="alice@localhost", mbody=line, mtype="chat")
            for _ in range(7):  # each delivered (and archived) before the probe asks
                await desk.next_message(10)
            strays: list[str] = []
            desk.register_handler(
                Callback(
                    "mam results",
                    MatchXPath("{jabber:client}message/{urn:xmpp:mam:2}result"),
                    lambda msg: strays.append(str(msg["id"])),
                )
            )
            out = await _outcomes(await _pep_probe(node, server, "mam", "carol@localhost"))
            await asyncio.sleep(1)  # what the server does with xmpp.js's unacked stanzas
            out["strays"] = strays
            return out
        finally:
            await carol.close()
            await desk.close()

    out = run(scenario, timeout=90)
    assert out["exit"] == 0, out
    forward = out["forward"]
    assert [page["bodies"] for page in forward] == [lines[0:3], lines[3:6], lines[6:7]]
    assert [page["complete"] for page in forward] == [None, None, "true"]
    for n, page in enumerate(forward):
        assert page["queryids"] == [f"f{n}"]  # §4.2: each result names its query
        assert page["first"] == page["ids"][0] and page["last"] == page["ids"][-1]
    assert len({i for page in forward for i in page["ids"]}) == 7
    last, previous = out["backward"]
    assert last["bodies"] == lines[4:7] and last["complete"] is None
    assert previous["bodies"] == lines[1:4]
    assert last["ids"] == forward[1]["ids"][1:] + forward[2]["ids"]
    assert out["huge"]["bodies"] == lines and out["huge"]["complete"] == "true"
    assert out["negative"] == {"type": "error", "condition": "bad-request", "results": 0}
    assert out["done"] is True and "error" not in out
    # results xmpp.js had not acked when it left are not handed to alice's other resource
    assert out["strays"] == []
