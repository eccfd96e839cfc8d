"""Operating a running server through its admin socket: every command's effect is visible
to real clients (slixmpp, WebSocket, BOSH) when the ``xmppd`` command returns.

The commands run as users run them (``python -m xmppd --config … COMMAND``, a
subprocess); scenarios call them through ``asyncio.to_thread`` so the clients keep
reading while the command runs.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import PresenceError

from tests.bosh_client import Bosh, BoshError
from tests.slix import AuthFailed, Client, login, run
from tests.ws_client import WsXmpp
from tests.ws_client import stream_error as ws_stream_error
from tests.xmppd_process import XmppdProcess, make_server, running_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROOM = "sax@conference.localhost"
USERS = ("alice", "bob", "carol")


def xmppd(server: XmppdProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m xmppd --config <server's> ARGS`` as an administrator runs it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XMPPD_")}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "xmppd", "--config", str(server.config_path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


async def axmppd(server: XmppdProcess, *args: str, stdin: str = "") -> Any:
    return await asyncio.to_thread(xmppd, server, *args, stdin=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stderr == "", result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """A failed command: the exit status, one line on stderr, no traceback."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmppd: "), result.stderr
    return lines[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(tmp_path, users=USERS) as srv:
        yield srv


async def client(server: XmppdProcess, user: str, resource: str = "r", **kw: Any) -> Client:
    c = await login(server, f"{user}@localhost/{resource}", plugins=["xep_0045"], **kw)
    c.auto_reconnect = False
    return c


def event(c: Client, name: str) -> asyncio.Future[Any]:
    """Resolves with the first ``name`` event of ``c`` (``stream_error``, ``disconnected``)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def seen(data: Any) -> None:
        if not future.done():
            future.set_result(data)

    c.add_event_handler(name, seen)
    return future


def stream_error(c: Client) -> asyncio.Future[Any]:
    return event(c, "stream_error")


def room_presences(c: Client, room: str = ROOM) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    c.add_event_handler(f"muc::{room}::presence", queue.put_nowait)
    return queue


async def unavailable(queue: asyncio.Queue[Any], nick: str) -> Any:
    while True:
        pres = await asyncio.wait_for(queue.get(), 10)
        if pres["type"] == "unavailable" and pres["from"].resource == nick:
            return pres


async def join(c: Client, nick: str, room: str = ROOM) -> None:
    await c.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=10)


async def next_said(c: Client) -> Any:
    """The next groupchat message with a body."""
    while True:
        msg = await c.next_message(10)
        if msg["type"] == "groupchat":
            return msg


def sessions(server: XmppdProcess) -> list[dict[str, Any]]:
    return json.loads(ok(xmppd(server, "sessions", "--json")))  # type: ignore[no-any-return]


async def can_login(server: XmppdProcess, user: str, password: str) -> bool:
    try:
        c = await login(
            server, f"{user}@localhost/check", password, send_presence=False, get_roster=False
        )
    except AuthFailed:
        return False
    await c.close()
    return True


# --------------------------------------------------------------------------- nicks
def test_registered_nick_is_refused_at_the_next_join(server: XmppdProcess) -> None:
    """Before: the running server saw the registration after muc.nick_reload_interval."""

    async def scenario() -> tuple[str, str, str, str]:
        bob = await client(server, "bob")
        added = ok(await axmppd(server, "register-nick", "Carol", "carol@localhost"))
        try:
            await join(bob, "carol")
            first = "joined"
        except PresenceError as exc:
            first = exc.condition
        released = ok(await axmppd(server, "unregister-nick", "CAROL"))
        await join(bob, "Carol")  # free again at once
        await bob.close()
        return added, first, released, "joined"

    added, first, released, second = run(scenario)
    assert added.strip() == "nick 'Carol' reserved for carol@localhost in every room"
    assert first == "conflict"
    assert released.strip() == "nick 'CAROL' released"
    assert second == "joined"


# --------------------------------------------------------------------------- accounts
def test_user_del_disconnects_with_not_authorized(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice, bob = await client(server, "alice"), await client(server, "bob")
        await join(alice, "Alice")
        await join(bob, "Bob")
        seen_by_bob = room_presences(bob)
        error, gone = stream_error(alice), event(alice, "disconnected")
        result = await axmppd(server, "user", "del", "alice")
        listed = await asyncio.to_thread(sessions, server)
        err = await asyncio.wait_for(error, 10)
        await asyncio.wait_for(gone, 10)
        left = await unavailable(seen_by_bob, "Alice")
        out = {
            "result": result,
            "condition": err["condition"],
            "text": err["text"],
            "listed": [s["jid"] for s in listed],
            "left_codes": left["muc"]["status_codes"],
            "login": await can_login(server, "alice", "secret"),
        }
        await bob.close()
        return out

    out = run(scenario)
    stdout = ok(out["result"])
    assert stdout.splitlines() == [
        "deleted alice@localhost",
        "ended 1 session(s): alice@localhost/r",
    ]
    assert out["condition"] == "not-authorized"
    assert "deleted" in out["text"]
    assert out["listed"] == ["bob@localhost/r"]  # gone when the command returned
    assert 110 not in out["left_codes"]
    assert out["login"] is False


def test_user_passwd_ends_sessions_with_reset_and_applies_at_once(server: XmppdProcess) -> None:
    """Before: the old password kept working for up to 60 s (credential cache)."""

    async def scenario() -> dict[str, Any]:
        # Two logins fill the server's credential cache with the old keys.
        assert await can_login(server, "alice", "secret")
        alice = await client(server, "alice", "desk")
        error, gone = stream_error(alice), event(alice, "disconnected")
        result = await axmppd(
            server, "user", "passwd", "alice", "--password-stdin", stdin="n3w pässword\n"
        )
        err = await asyncio.wait_for(error, 10)
        await asyncio.wait_for(gone, 10)
        return {
            "result": result,
            "condition": err["condition"],
            "old": await can_login(server, "alice", "secret"),
            "new": await can_login(server, "alice", "n3w pässword"),
        }

    out = run(scenario)
    assert ok(out["result"]).splitlines() == [
        "password changed for alice@localhost",
        "ended 1 session(s): alice@localhost/desk",
    ]
    assert out["condition"] == "reset"
    assert out["old"] is False
    assert out["new"] is True
    assert "n3w pässword" not in server.log()


def test_user_add_logs_in_at_once_even_after_a_delete(server: XmppdProcess) -> None:
    """Before: a re-created account kept its old cached credentials for up to 60 s."""

    async def scenario() -> list[bool]:
        results = [await can_login(server, "alice", "secret")]
        ok(await axmppd(server, "user", "del", "alice"))
        added = await axmppd(server, "user", "add", "alice", "--password-stdin", stdin="second\n")
        assert ok(added).strip() == "created alice@localhost"
        results.append(await can_login(server, "alice", "second"))
        results.append(await can_login(server, "alice", "secret"))
        added = await axmppd(server, "user", "add", "dave", "--password-stdin", stdin="pw\n")
        assert ok(added).strip() == "created dave@localhost"
        results.append(await can_login(server, "dave", "pw"))
        return results

    assert run(scenario) == [True, True, False, True]


# --------------------------------------------------------------------------- sessions
def test_kick_ends_sessions_with_the_reason(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        phone, desk = await client(server, "alice", "phone"), await client(server, "alice", "desk")
        bob = await client(server, "bob")
        phone_error, desk_error = stream_error(phone), stream_error(desk)
        one = await axmppd(server, "kick", "alice@localhost/phone", "--reason", "too loud")
        phone_err = await asyncio.wait_for(phone_error, 10)
        after_one = await asyncio.to_thread(sessions, server)
        both = await axmppd(server, "kick", "--user", "Alice")
        desk_err = await asyncio.wait_for(desk_error, 10)
        after_all = await asyncio.to_thread(sessions, server)
        nobody = await axmppd(server, "kick", "alice@localhost")
        await bob.close()
        return {
            "one": one,
            "phone": (phone_err["condition"], phone_err["text"]),
            "after_one": sorted(s["jid"] for s in after_one),
            "both": both,
            "desk": (desk_err["condition"], desk_err["text"]),
            "after_all": [s["jid"] for s in after_all],
            "nobody": nobody,
        }

    out = run(scenario)
    assert ok(out["one"]).strip() == "kicked alice@localhost/phone: 1 session(s) ended"
    assert out["phone"] == ("policy-violation", "too loud")
    assert out["after_one"] == ["alice@localhost/desk", "bob@localhost/r"]
    assert ok(out["both"]).strip() == "kicked alice@localhost: 1 session(s) ended"
    assert out["desk"] == ("policy-violation", "kicked by an administrator")
    assert out["after_all"] == ["bob@localhost/r"]
    assert "has no session" in one_line_error(out["nobody"], 1)


def test_sessions_lists_tcp_websocket_and_bosh_kick_ends_each(server: XmppdProcess) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], str, float, float]:
        start = time.time()
        alice = await client(server, "alice", "tcp")
        ws = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket")
        await ws.login("bob", "secret", resource="ws")
        bosh = Bosh(server.http_port)
        await bosh.login("carol", resource="bosh")
        listed = await asyncio.to_thread(sessions, server)
        text = ok(await axmppd(server, "sessions"))
        end = time.time()
        # kick reaches every transport with its stream error
        ok(await axmppd(server, "kick", "bob@localhost", "--reason", "ws out"))
        ws_error = await ws.recv_until("{http://etherx.jabber.org/streams}error")
        held = asyncio.ensure_future(bosh.send())  # a long poll, as Strophe keeps one
        ok(await axmppd(server, "kick", "carol@localhost", "--reason", "bosh out"))
        # the held request (or, if it arrived after the kick, the answer to it) terminates
        with pytest.raises(BoshError, match="remote-stream-error"):
            await asyncio.wait_for(held, 10)
        left = await asyncio.to_thread(sessions, server)
        await alice.close()
        await ws.close()
        await bosh.aclose()
        assert ws_stream_error(ws_error) == "policy-violation"
        assert [s["jid"] for s in left] == ["alice@localhost/tcp"]
        return listed, text, start, end

    listed, text, start, end = run(scenario)
    by_jid = {s["jid"]: s for s in listed}
    assert set(by_jid) == {"alice@localhost/tcp", "bob@localhost/ws", "carol@localhost/bosh"}
    assert by_jid["alice@localhost/tcp"]["transport"] == "tls"  # STARTTLS
    assert by_jid["bob@localhost/ws"]["transport"] == "websocket"
    assert by_jid["carol@localhost/bosh"]["transport"] == "bosh"
    for entry in listed:
        assert entry["ip"] == "127.0.0.1"
        assert entry["state"] == "connected"
        since = calendar.timegm(time.strptime(entry["since"], "%Y-%m-%dT%H:%M:%SZ"))
        assert int(start) <= since <= end, entry
    header, *rows = text.splitlines()
    assert header.split() == ["JID", "TRANSPORT", "IP", "SINCE"]
    assert len(rows) == 3
    assert rows[1].split()[:3] == ["bob@localhost/ws", "websocket", "127.0.0.1"]


def test_stats(server: XmppdProcess) -> None:
    async def scenario() -> tuple[dict[str, Any], str]:
        alice, bob = await client(server, "alice"), await client(server, "bob")
        await join(alice, "Alice")
        await join(bob, "Bob")
        stats = json.loads(ok(await axmppd(server, "stats", "--json")))
        text = ok(await axmppd(server, "stats"))
        await alice.close()
        await bob.close()
        return stats, text

    stats, text = run(scenario)
    assert stats["sessions"] == 2
    assert stats["sessions_by_transport"] == {"tls": 2}
    assert stats["users_online"] == 2
    assert stats["client_connections"] == 2
    assert stats["rooms"] == 1
    assert stats["occupants"] == 2
    assert stats["uptime_seconds"] > 0
    assert stats["memory_rss_bytes"] > 1_000_000
    assert "sessions: 2" in text.splitlines()


# --------------------------------------------------------------------------- rooms
def test_say_and_subject_reach_every_occupant_from_the_room(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice, bob = await client(server, "alice"), await client(server, "bob")
        await join(alice, "Alice")
        await join(bob, "Bob")
        said = await axmppd(server, "say", "sax", "Maintenance at 20:00 UTC <b>&")
        got = [await next_said(c) for c in (alice, bob)]
        topic_changes = [event(c, "groupchat_subject") for c in (alice, bob)]
        subject = await axmppd(server, "subject", ROOM, "Back at 20:30")
        topics = [await asyncio.wait_for(t, 10) for t in topic_changes]
        rooms = json.loads(ok(await axmppd(server, "rooms", "--json")))
        occupants = json.loads(ok(await axmppd(server, "occupants", "sax", "--json")))
        carol = await client(server, "carol")
        _p, _s, _o, history = await carol.plugin["xep_0045"].join_muc_wait(
            ROOM, "Carol", maxstanzas=5, timeout=10
        )
        for c in (alice, bob, carol):
            await c.close()
        return {
            "said": said,
            "got": [
                (str(m["from"]), m["body"], m.xml.find("{urn:xmpp:sid:0}stanza-id") is not None)
                for m in got
            ],
            "subject": subject,
            "topics": [(str(m["from"]), m["subject"]) for m in topics],
            "rooms": rooms,
            "occupants": occupants,
            "history": [m["body"] for m in history],
        }

    out = run(scenario)
    assert ok(out["said"]).strip() == f"said in {ROOM} (2 occupants)"
    assert out["got"] == [(ROOM, "Maintenance at 20:00 UTC <b>&", True)] * 2
    assert ok(out["subject"]).strip() == f"subject of {ROOM} set"
    assert out["topics"] == [(ROOM, "Back at 20:30")] * 2
    assert out["rooms"][0]["jid"] == ROOM and out["rooms"][0]["subject"] == "Back at 20:30"
    assert out["rooms"][0]["occupants"] == 2
    assert [(o["nick"], o["jid"], o["role"]) for o in out["occupants"]] == [
        ("Alice", "alice@localhost", "participant"),
        ("Bob", "bob@localhost", "participant"),
    ]
    assert out["history"] == ["Maintenance at 20:00 UTC <b>&"]  # archived like any message


def test_room_ban_removes_and_keeps_out_until_unbanned(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice, bob = await client(server, "alice"), await client(server, "bob", "one")
        await join(alice, "Alice")
        await join(bob, "Bob")
        seen_by_alice, seen_by_bob = room_presences(alice), room_presences(bob)
        banned = await axmppd(server, "room-ban", "sax", "bob@localhost/any", "--reason", "spam")
        occupants = json.loads(ok(await axmppd(server, "occupants", "sax", "--json")))
        to_alice = await unavailable(seen_by_alice, "Bob")
        to_bob = await unavailable(seen_by_bob, "Bob")
        other = await client(server, "bob", "two")
        try:
            await join(other, "Bob2")
            rejoin = "joined"
        except PresenceError as exc:
            rejoin = exc.condition
        unbanned = await axmppd(server, "room-unban", ROOM, "bob@localhost")
        await join(other, "Bob2")
        again = await axmppd(server, "room-unban", ROOM, "bob@localhost")
        for c in (alice, bob, other):
            await c.close()
        return {
            "banned": banned,
            "occupants": [o["nick"] for o in occupants],
            "alice_codes": to_alice["muc"]["status_codes"],
            "bob_codes": to_bob["muc"]["status_codes"],
            "reason": to_bob.xml.findtext(".//{http://jabber.org/protocol/muc#user}reason"),
            "rejoin": rejoin,
            "unbanned": unbanned,
            "again": again,
        }

    out = run(scenario)
    assert ok(out["banned"]).strip() == f"bob@localhost banned from {ROOM} (1 occupant(s) removed)"
    assert out["occupants"] == ["Alice"]
    assert out["alice_codes"] == {301}
    assert out["bob_codes"] == {301, 110}
    assert out["reason"] == "spam"
    assert out["rejoin"] == "forbidden"
    assert ok(out["unbanned"]).strip() == f"bob@localhost may enter {ROOM} again"
    assert "is not banned" in one_line_error(out["again"], 1)


def test_destroy_room_tells_occupants_and_removes_it(server: XmppdProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice = await client(server, "alice")
        await join(alice, "Alice")
        seen = room_presences(alice)
        destroyed = await axmppd(server, "destroy-room", "sax", "--reason", "moving on")
        gone = await unavailable(seen, "Alice")
        rooms = json.loads(ok(await axmppd(server, "rooms", "--json")))
        missing = await axmppd(server, "say", "sax", "hello?")
        await alice.close()
        return {"destroyed": destroyed, "gone": gone, "rooms": rooms, "missing": missing}

    out = run(scenario)
    assert ok(out["destroyed"]).startswith(f"destroyed {ROOM} (1 occupant(s) told)")
    destroy = out["gone"].xml.find(".//{http://jabber.org/protocol/muc#user}destroy")
    assert destroy is not None
    assert destroy.findtext("{http://jabber.org/protocol/muc#user}reason") == "moving on"
    assert out["rooms"] == []
    assert "no room sax@conference.localhost" in one_line_error(out["missing"], 1)


# --------------------------------------------------------------------------- reload
def test_reload_names_changed_options_and_refuses_a_bad_config(server: XmppdProcess) -> None:
    assert ok(xmppd(server, "reload")).strip() == "configuration reloaded: nothing changed"
    original = server.config_path.read_text(encoding="utf-8")
    server.config_path.write_text(
        original + "\n[limits]\nauth_failures_per_minute = 3\n", encoding="utf-8"
    )
    changed = ok(xmppd(server, "reload"))
    assert "applied limits.auth_failures_per_minute" in changed
    server.config_path.write_text(original + '\n[sm]\nmax_unacked = "lots"\n', encoding="utf-8")
    # The CLI itself reads the file first: write the bad value where only the server looks.
    bad = subprocess.run(
        [sys.executable, "-c", _RAW_CALL, str(server.data_dir / "admin.sock"), "reload", "{}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False and doc["error"] == "bad-config"
    assert "sm.max_unacked" in doc["message"]
    server.config_path.write_text(original, encoding="utf-8")
    assert sessions(server) == []  # still serving


# --------------------------------------------------------------------------- the socket
#: A minimal client of the protocol (stdlib only): socket path, command, JSON args.
_RAW_CALL = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print(json.dumps({"connect": "EACCES"}))
    sys.exit(0)
s.sendall(json.dumps({"command": sys.argv[2], "args": json.loads(sys.argv[3])}).encode() + b"\\n")
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


def _as_nobody(path: Path, *, gid: int = 65534) -> dict[str, Any]:
    """Call ``stats`` from a process running as uid 65534 (``nobody``)."""
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", _RAW_CALL, str(path), "stats", "{}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        user=65534,
        group=gid,
        extra_groups=[],
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everyone may enter, so only the socket's own mode protects it."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="xmppd-admin-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as nobody")
def test_socket_refuses_other_uids_by_mode_and_by_peer_credentials(
    tmp_path: Path, open_dir: Path
) -> None:
    sock = open_dir / "admin.sock"
    with running_server(tmp_path, admin={"socket": str(sock)}) as srv:
        st = sock.stat()
        assert oct(st.st_mode & 0o777) == oct(0o600)
        assert st.st_uid == os.geteuid()
        assert _as_nobody(sock) == {"connect": "EACCES"}  # the file mode
        sock.chmod(0o666)  # a mistake: the listener still checks who connects
        refused = _as_nobody(sock)
        assert refused["ok"] is False and refused["error"] == "forbidden"
        assert "uid 65534" in refused["message"]
        assert "event=admin_refused uid=65534" in srv.log()
        assert (
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", _RAW_CALL, str(sock), "stats", "{}"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                ).stdout
            )["ok"]
            is True
        )
    assert not sock.exists()  # removed at shutdown


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as nobody")
def test_socket_group_members_may_use_it(tmp_path: Path, open_dir: Path) -> None:
    sock = open_dir / "admin.sock"
    with running_server(tmp_path, admin={"socket": str(sock), "group": "nogroup"}):
        st = sock.stat()
        assert oct(st.st_mode & 0o777) == oct(0o660)
        assert st.st_gid == 65534
        answer = _as_nobody(sock)  # nobody's group is nogroup
        assert answer["ok"] is True and answer["result"]["sessions"] == 0


def test_stale_socket_is_replaced_and_a_second_serve_refused(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    path = tmp_path / "admin.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a crash leaves the file behind, nobody listening
    stale.close()
    srv.start()
    try:
        inode = path.stat().st_ino
        assert json.loads(ok(xmppd(srv, "stats", "--json")))["sessions"] == 0
        (tmp_path / "second").mkdir()
        second = make_server(tmp_path / "second")  # other ports, same admin socket
        second.config_path.write_text(
            second.config_path.read_text(encoding="utf-8") + f'\n[admin]\nsocket = "{path}"\n',
            encoding="utf-8",
        )
        done = subprocess.run(
            [sys.executable, "-m", "xmppd", "--config", str(second.config_path), "serve"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        line = one_line_error(done, 2)
        assert "in use: another xmppd is already running" in line
        assert not (tmp_path / "second" / "xmppd.sqlite3").exists()  # stopped before anything
        for port in (second.port, second.http_port):
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                pass
        assert path.stat().st_ino == inode  # the first server's socket is untouched
        assert json.loads(ok(xmppd(srv, "stats", "--json")))["sessions"] == 0
    finally:
        srv.stop()


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    server: XmppdProcess, tmp_path: Path
) -> None:
    cases = [
        (("frob",), "unknown command 'frob'"),
        (("say", "sax"), "required: text"),
        (("kick",), "give a JID or --user"),
        (("kick", "alice@@localhost"), "not a valid JID"),
        (("register-nick", "Eve", "not a jid@"), "not a valid JID"),
        (("register-nick", "Eve", "localhost"), "not a user's JID"),
        (("occupants", "sax@elsewhere.example"), "not a room of conference.localhost"),
        (("say", "bad room", "hi"), "not a valid room name"),
        (("room-ban", "sax", "@nope"), "not a valid JID"),
        (("room-ban", "sax", "eve@localhost", "--reason", "x" * 501), "longer than 500"),
        (("user", "del", "a@b"), "not a valid user name"),
    ]
    for args, expected in cases:
        assert expected in one_line_error(xmppd(server, *args), 2), args
    # nothing changed: no nick, users intact, the room still there
    db = server.database()
    try:
        from xmppd.storage.muc import MucStore

        assert MucStore(db).load_nicks() == []
        assert db.list_users() == list(USERS)
        assert "eve@localhost" not in MucStore(db).load_rooms()[0].affiliations  # not banned
    finally:
        db.dispose()
    assert json.loads(ok(xmppd(server, "rooms", "--json")))[0]["jid"] == ROOM

    raw = [
        (b"not json\n", "bad-request"),
        (b'{"command": "frob"}\n', "unknown-command"),
        (b'{"command": "kick", "args": {}}\n', "bad-request"),
        (b'{"command": "say", "args": {"room": "sax", "text": "\\u0001"}}\n', "bad-request"),
        (b'{"command": "sessions", "args": []}\n', "bad-request"),
    ]
    for request, code in raw:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(server.data_dir / "admin.sock"))
            s.sendall(request)
            doc = json.loads(s.makefile("rb").readline())
        assert doc["ok"] is False and doc["error"] == code, (request, doc)


def test_a_socket_that_is_not_xmppds(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    path = tmp_path / "admin.sock"

    def chatty() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    thread = threading.Thread(target=chatty, daemon=True)
    thread.start()
    try:
        line = one_line_error(xmppd(srv, "stats"), 2)
        assert "did not answer like xmppd's admin socket" in line
    finally:
        thread.join(10)
        listener.close()
        path.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
        dgram.bind(str(path))  # e.g. the webridge's socket
        assert "not a stream socket" in one_line_error(xmppd(srv, "kick", "a@localhost"), 2)
    path.unlink()
    path.write_text("just a file")
    line = one_line_error(xmppd(srv, "register-nick", "Eve", "eve@localhost"), 2)
    assert "is not a socket" in line
    db = srv.database()
    try:
        db.upgrade()
        from xmppd.storage.muc import MucStore

        assert MucStore(db).load_nicks() == []  # no fallback to the database past a foreign socket
    finally:
        db.dispose()


def test_without_a_server_changes_go_to_the_database_with_a_note(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    added = xmppd(srv, "register-nick", "Carol", "carol@localhost")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "nick 'Carol' reserved for carol@localhost in every room"
    assert added.stderr.startswith("xmppd: note: xmppd is not running")
    assert "changing the database directly" in added.stderr
    live = xmppd(srv, "sessions")
    assert "xmppd is not running" in one_line_error(live, 1)


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xmppd", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for name in (
        "serve",
        "user",
        "register-nick",
        "unregister-nick",
        "sync-nicks",
        "sessions",
        "kick",
        "rooms",
        "occupants",
        "say",
        "subject",
        "room-ban",
        "room-unban",
        "destroy-room",
        "stats",
        "reload",
    ):
        assert f"\n    {name} " in done.stdout, name


# --------------------------------------------------------------------------- PHP
PHP_ADMIN = ROOT / "xmppd/web/php/xmppd_admin.php"

# Records anything PHP reports, runs the code (which sets $reply) and prints both as JSON.
PHP_SCRIPT = """<?php
error_reporting(E_ALL);
ini_set('display_errors', '1');
$errors = [];
set_error_handler(function ($no, $str) use (&$errors) { $errors[] = $str; return true; });
%s
echo json_encode(['reply' => $reply, 'errors' => $errors]);
"""


def php(code: str, tmp: Path) -> dict[str, Any]:
    from tests.conftest import require_program

    binary = require_program("php", "Debian package php-cli")
    script = tmp / "call_xmppd_admin.php"
    script.write_text(PHP_SCRIPT % code, encoding="utf-8")
    done = subprocess.run([binary, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""  # the snippet's error_log() was not called
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def readme_kick_snippet(socket_path: Path) -> str:
    """The README's PHP snippet, pointed at this checkout and this server's socket."""
    import re

    blocks = re.findall(r"```php\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "xmppd_admin('kick'" in b]
    return block.replace("/opt/xmppd/xmppd/web/php/xmppd_admin.php", str(PHP_ADMIN)).replace(
        "/run/xmppd/admin.sock", str(socket_path)
    )


def test_php_ban_hook_kicks_the_member(server: XmppdProcess, tmp_path: Path) -> None:
    snippet = "$username = 'Alice';\n" + readme_kick_snippet(server.data_dir / "admin.sock")

    async def scenario() -> tuple[dict[str, Any], Any]:
        alice = await client(server, "alice", "web")
        error = stream_error(alice)
        out = await asyncio.to_thread(php, snippet, tmp_path)
        return out, await asyncio.wait_for(error, 10)

    out, err = run(scenario)
    assert out["errors"] == []
    assert out["reply"]["ok"] is True, out
    assert out["reply"]["result"]["ended"] == ["alice@localhost/web"]
    assert (err["condition"], err["text"]) == ("policy-violation", "You have been banned.")
    again = php(snippet, tmp_path)  # no longer in the chat: not-found, not logged
    assert again["reply"]["error"] == "not-found"
    stats = php(
        f"require {json.dumps(str(PHP_ADMIN))};\n"
        f"$reply = xmppd_admin('stats', [], {json.dumps(str(server.data_dir / 'admin.sock'))});",
        tmp_path,
    )
    assert stats["reply"]["ok"] is True and stats["reply"]["result"]["sessions"] == 0


def test_php_helper_when_xmppd_is_down(tmp_path: Path) -> None:
    start = time.monotonic()
    down = php(
        f"require {json.dumps(str(PHP_ADMIN))};\n"
        f"$reply = xmppd_admin('kick', ['user' => 'x'], {json.dumps(str(tmp_path / 'no.sock'))});",
        tmp_path,
    )
    assert down["errors"] == []
    assert down["reply"]["ok"] is False and down["reply"]["error"] == "unreachable"
    assert time.monotonic() - start < 10


def test_kicked_sessions_cannot_be_resumed(server: XmppdProcess) -> None:
    """XEP-0198: a kick ends the session, whether connected or waiting for a resume."""
    from tests.integration.test_stream_management import auth_only, enable
    from tests.raw_client import RawClient

    live = RawClient(server.port)
    live.login("bob", "secret", resource="live")
    live_token = enable(live)
    gone = RawClient(server.port)
    gone.login("alice", "secret", resource="gone")
    gone_token = enable(gone)
    gone.sock.close()  # the connection drops: the session waits for <resume/>
    deadline = time.monotonic() + 10
    while {s["jid"]: s["state"] for s in sessions(server)}.get("alice@localhost/gone") != (
        "detached"
    ):
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    ok(xmppd(server, "kick", "alice@localhost"))
    ok(xmppd(server, "kick", "bob@localhost/live", "--reason", "bye"))
    closing = live.read_to_close()
    live.close()
    assert b"<policy-violation" in closing and b">bye</text>" in closing
    assert sessions(server) == []
    for user, token in (("alice", gone_token), ("bob", live_token)):
        again = RawClient(server.port)
        try:
            auth_only(again, user)
            again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>".encode())
            reply = again.read_until(b"</failed>")
            assert b"<item-not-found" in reply and b"<resumed" not in reply
        finally:
            again.close()
