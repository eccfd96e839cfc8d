"""Multi-user chat against a real server process, with several slixmpp (xep_0045) clients.

Until ``xmppd.config.Config`` has a ``muc`` section wired into ``Server``, this file is also
its own launcher: run as a script it builds the server exactly like ``xmppd serve`` does
and installs the MUC service next to it (nothing in xmppd is patched).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import PresenceError

from tests.slix import IqError, login, run
from tests.xmppd_process import XmppdProcess, make_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
MUC_NS = "http://jabber.org/protocol/muc"


def _config_has_muc() -> bool:
    from xmppd.config import Config

    return "muc" in {f.name for f in dataclasses.fields(Config)}


@dataclass
class MucProcess(XmppdProcess):
    """An ``XmppdProcess`` started through this file's launcher when MUC is not wired yet."""

    muc: dict[str, Any] = field(default_factory=dict)

    def start(self, timeout: float = 20.0) -> None:
        if _config_has_muc():
            super().start(timeout)
            return
        import socket

        self.log_path = self.data_dir / "xmppd.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.config_path), json.dumps(self.muc)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xmppd exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"xmppd did not start listening:\n{self.log()}")


def muc_server(tmp: Path, muc: dict[str, Any] | None = None, **overrides: Any) -> MucProcess:
    muc = muc or {}
    if _config_has_muc():
        overrides["muc"] = muc
    base = make_server(tmp, **overrides)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(XmppdProcess)}
    return MucProcess(**fields, muc=muc)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MucProcess]:
    srv = muc_server(tmp_path, {"history_default": 20}, server={"admins": ["boss@localhost"]})
    for user in ("alice", "bob", "carol", "mallory", "boss"):
        srv.add_user(user, "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def _client(server: XmppdProcess, user: str, resource: str = "r") -> Any:
    return await login(server, f"{user}@localhost/{resource}", plugins=["xep_0045"])


async def _groupchat(client: Any, timeout: float = 5.0) -> Any:
    while True:
        msg = await client.next_message(timeout)
        if msg["type"] == "groupchat" and msg["body"]:
            return msg


def _room_presences(client: Any) -> asyncio.Queue[Any]:
    """Presences from the room (slixmpp routes them to muc events, not "presence")."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(f"muc::{ROOM}::presence", queue.put_nowait)
    return queue


async def _unavailable(queue: asyncio.Queue[Any], nick: str) -> Any:
    while True:
        pres = await asyncio.wait_for(queue.get(), 5)
        if pres["type"] == "unavailable" and pres["from"].resource == nick:
            return pres


def test_several_clients_chat_and_history_survives_restart(server: MucProcess) -> None:
    async def first_run() -> tuple[list[str], set[str]]:
        alice, bob = await _client(server, "alice"), await _client(server, "bob")
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        await muc_a.join_muc_wait(ROOM, "Alice", maxstanzas=0, timeout=10)
        await muc_b.join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
        received: list[str] = []
        ids: set[str] = set()
        for i in range(25):
            alice.send_message(mto=ROOM, mbody=f"line {i}", mtype="groupchat")
            msg = await _groupchat(bob)
            received.append(msg["body"])
            ids.add(msg.xml.find("{urn:xmpp:sid:0}stanza-id").get("id"))
        await alice.close()
        await bob.close()
        return received, ids

    received, ids = run(first_run)
    assert received == [f"line {i}" for i in range(25)]
    assert len(ids) == 25
    server.restart()

    async def after_restart() -> tuple[list[str], list[str], str]:
        carol = await _client(server, "carol")
        _pres, _subject, _occupants, history = await carol.plugin["xep_0045"].join_muc_wait(
            ROOM, "Carol", timeout=10
        )
        bodies = [m["body"] for m in history]
        stamps = [m["delay"]["stamp"].isoformat() for m in history]
        sid = history[-1].xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
        await carol.close()
        return bodies, stamps, sid

    bodies, stamps, sid = run(after_restart)
    assert bodies == [f"line {i}" for i in range(5, 25)]
    assert stamps == sorted(stamps)
    assert sid in ids


def test_registered_nick_cannot_be_impersonated(server: MucProcess) -> None:
    from xmppd.storage.muc import MucStore

    db = server.database()
    try:
        MucStore(db).register_nick("Alice", "alice@localhost")
    finally:
        db.dispose()
    server.restart()  # the registry is loaded at start (and reloaded periodically)

    async def scenario() -> list[str]:
        mallory = await _client(server, "mallory")
        conditions = []
        for nick in ("Alice", "alice", "\uff21\uff2c\uff29\uff23\uff25", " Alice"):
            try:
                await mallory.plugin["xep_0045"].join_muc_wait(ROOM, nick, timeout=10)
                conditions.append("joined")
            except PresenceError as exc:
                conditions.append(exc.condition)
        alice = await _client(server, "alice")
        pres, *_ = await alice.plugin["xep_0045"].join_muc_wait(ROOM, "alice", timeout=10)
        conditions.append(str(pres["from"]))
        await mallory.close()
        await alice.close()
        return conditions

    got = run(scenario)
    assert got[:3] == ["conflict", "conflict", "conflict"]
    assert got[3] in ("jid-malformed", "not-acceptable")  # edge whitespace never joins
    assert got[4] == f"{ROOM}/alice"


def test_moderation_kick_ban_and_refusals(server: MucProcess) -> None:
    async def scenario() -> dict[str, Any]:
        boss, bob, carol = [await _client(server, u) for u in ("boss", "bob", "carol")]
        for client, nick in ((boss, "Boss"), (bob, "Bob"), (carol, "Carol")):
            await client.plugin["xep_0045"].join_muc_wait(ROOM, nick, maxstanzas=0, timeout=10)
        out: dict[str, Any] = {}
        carol_q, bob_q = _room_presences(carol), _room_presences(bob)
        try:
            await bob.plugin["xep_0045"].set_role(ROOM, "Carol", "none")
        except IqError as exc:
            out["participant_kick"] = exc.condition
        await boss.plugin["xep_0045"].set_role(ROOM, "Carol", "none", reason="cool off")
        kicked = await _unavailable(carol_q, "Carol")
        out["kick_codes"] = sorted(
            s.get("code") for s in kicked.xml.iter(f"{{{MUC_NS}#user}}status")
        )
        await boss.plugin["xep_0045"].set_affiliation(ROOM, "outcast", jid="bob@localhost")
        banned = await _unavailable(bob_q, "Bob")
        out["ban_codes"] = sorted(
            s.get("code") for s in banned.xml.iter(f"{{{MUC_NS}#user}}status")
        )
        try:
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bobby", timeout=10)
        except PresenceError as exc:
            out["banned_rejoin"] = exc.condition
        for client in (boss, bob, carol):
            await client.close()
        return out

    out = run(scenario)
    assert out["participant_kick"] == "not-allowed"
    assert out["kick_codes"] == ["110", "307"]
    assert out["ban_codes"] == ["110", "301"]
    assert out["banned_rejoin"] == "forbidden"


def test_bad_input_gets_errors(server: MucProcess) -> None:
    async def scenario() -> dict[str, str]:
        alice = await _client(server, "alice")
        out: dict[str, str] = {}

        errors: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("presence_error", errors.put_nowait)

        async def presence_error(to: str, history: dict[str, str] | None = None) -> str:
            pres = alice.make_presence(pto=to)
            x = ElementTree.SubElement(pres.xml, f"{{{MUC_NS}}}x")
            if history is not None:
                ElementTree.SubElement(x, f"{{{MUC_NS}}}history", history)
            pres.send()
            got = await asyncio.wait_for(errors.get(), 5)
            return got["error"]["condition"]

        out["no_nick"] = await presence_error(ROOM)
        out["other_domain"] = await presence_error("room@nowhere.localhost/Alice")
        out["history"] = await presence_error(f"{ROOM}/Hist", {"maxstanzas": "-1"})
        out["since"] = await presence_error(f"{ROOM}/Hist", {"since": "yesterday"})
        await alice.plugin["xep_0045"].join_muc_wait(ROOM, "Alice", maxstanzas=0, timeout=10)
        message_errors: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message_error", message_errors.put_nowait)
        alice.send_message(mto=ROOM, mbody="not groupchat", mtype="chat")
        msg = await asyncio.wait_for(message_errors.get(), 5)
        out["chat_to_room"] = msg["error"]["condition"]
        await alice.close()
        return out

    out = run(scenario)
    assert out == {
        "no_nick": "jid-malformed",
        "other_domain": "remote-server-not-found",
        "history": "bad-request",
        "since": "bad-request",
        "chat_to_room": "bad-request",
    }


# ----------------------------------------------------------------- the launcher
def _serve(config_path: str, muc_json: str) -> None:
    import trio

    from xmppd.cli import setup_logging
    from xmppd.config import load_config
    from xmppd.muc.config import MucConfig
    from xmppd.muc.service import install
    from xmppd.server import build_server, run_server

    config = load_config(config_path)
    setup_logging(config.server.log_level)
    server = build_server(config)
    muc = install(
        server.router, server.adb, MucConfig(**json.loads(muc_json)), config.server.admins
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if muc is not None:
                await nursery.start(muc.run)
            await run_server(server)
            nursery.cancel_scope.cancel()

    trio.run(main)


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])


def test_password_protected_room(server: MucProcess) -> None:
    """§7.2.6: an owner sets a password; joins without it or with a wrong one are refused."""
    config = (
        '<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" '
        'type="submit"><field var="FORM_TYPE"><value>'
        "http://jabber.org/protocol/muc#roomconfig</value></field>"
        '<field var="muc#roomconfig_passwordprotectedroom"><value>1</value></field>'
        '<field var="muc#roomconfig_roomsecret"><value>open sesame</value></field></x></query>'
    )

    async def scenario() -> dict[str, Any]:
        boss, alice = await _client(server, "boss"), await _client(server, "alice")
        await boss.plugin["xep_0045"].join_muc_wait(ROOM, "Boss", maxstanzas=0, timeout=10)
        iq = boss.make_iq_set(ito=ROOM)
        iq.append(ElementTree.fromstring(config))  # noqa: S314 - our own literal
        await iq.send(timeout=10)
        out: dict[str, Any] = {}
        for label, password in (("none", None), ("wrong", "open sesam")):
            try:
                await alice.plugin["xep_0045"].join_muc_wait(
                    ROOM, "Alice", password=password, maxstanzas=0, timeout=10
                )
            except PresenceError as exc:
                out[label] = (exc.condition, exc.presence["error"]["type"])
        pres, *_ = await alice.plugin["xep_0045"].join_muc_wait(
            ROOM, "Alice", password="open sesame", maxstanzas=0, timeout=10
        )
        out["right"] = str(pres["from"])
        info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=10)
        out["features"] = set(info["disco_info"]["features"])
        for client in (boss, alice):
            await client.close()
        return out

    out = run(scenario)
    assert out["none"] == ("not-authorized", "auth")
    assert out["wrong"] == ("not-authorized", "auth")
    assert out["right"] == f"{ROOM}/Alice"
    assert "muc_passwordprotected" in out["features"]
    assert "muc_unsecured" not in out["features"]
