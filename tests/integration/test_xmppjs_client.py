"""An independent client library, xmpp.js (@xmpp/client from npm), against a real xmppd.

xmpp.js negotiates on its own terms (its SASL choice, XEP-0198 enabled by default,
STARTTLS over TCP, RFC 7395 framing over WebSocket): the probe in
``tests/browser/xmppjs_probe.mjs`` logs in, joins the room, speaks there and to a slixmpp
user, pings and reads its roster; the test checks each outcome, and what slixmpp saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import in_ci, require_program
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
PROBE = BROWSER_DIR / "xmppjs_probe.mjs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdProcess]:
    with running_server(tmp_path_factory.mktemp("xmppjs"), users=("alice", "bob")) as srv:
        yield srv


def _node() -> str:
    node = require_program("node", "Debian package nodejs")
    if not (BROWSER_DIR / "node_modules" / "@xmpp" / "client").is_dir():
        message = "xmpp.js is not installed: npm ci in tests/browser"
        if in_ci():
            pytest.fail(message + " (.ci/run does it)", pytrace=False)
        pytest.skip(message)
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
