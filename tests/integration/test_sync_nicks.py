"""Forum usernames become reserved MUC nicks: ``xmppd sync-nicks`` and the nick CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
from slixmpp.exceptions import PresenceError

from tests.phpbb.fixtures import PhpbbDatabase, phpbb_db  # noqa: F401 - fixture
from tests.slix import login, run
from tests.xmppd_process import make_server, running_server
from xmppd.storage import Database
from xmppd.storage.muc import MucStore

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"


def _xmppd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xmppd", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bcrypt(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def _nicks(url: str) -> dict[str, str]:
    db = Database(url)
    try:
        return {nick: jid for _room, nick, jid in MucStore(db).load_nicks()}
    finally:
        db.dispose()


def test_sync_nicks_reserves_forum_names(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    now = int(time.time())
    jane = phpbb_db.add_user("Jane Doe", password_hash=_bcrypt("janepw"))
    bob = phpbb_db.add_user("bob", password_hash=_bcrypt("bobpw"))
    phpbb_db.add_user("SomeBot", user_type=2)  # bots and the guest are not members
    jane_sid = phpbb_db.add_session(jane, session_time=now)
    bob_sid = phpbb_db.add_session(bob, session_time=now)

    auth = {"backend": "phpbb", "phpbb": {"url": phpbb_db.url}}
    server = make_server(tmp_path, auth=auth)
    first = _xmppd(server.config_path, "sync-nicks")
    assert first.returncode == 0, first.stderr
    assert "added=2" in first.stdout
    again = _xmppd(server.config_path, "sync-nicks")
    assert "added=0 changed=0" in again.stdout  # idempotent
    nicks = _nicks(server.database_url)
    assert nicks.get("Jane Doe") == "jane\\20doe@localhost"
    assert nicks.get("bob") == "bob@localhost"
    assert "SomeBot" not in nicks

    with running_server(tmp_path, auth=auth) as live:

        async def scenario() -> tuple[str, str]:
            mallory = await login(live, "bob@localhost/desk", bob_sid, plugins=["xep_0045"])
            try:
                await mallory.plugin["xep_0045"].join_muc_wait(ROOM, "jane doe", timeout=10)
                outcome = "joined"
            except PresenceError as exc:
                outcome = exc.condition
            owner = await login(live, "jane\\20doe@localhost/web", jane_sid, plugins=["xep_0045"])
            pres, *_ = await owner.plugin["xep_0045"].join_muc_wait(ROOM, "Jane Doe", timeout=10)
            await mallory.close()
            await owner.close()
            return outcome, str(pres["from"])

        outcome, joined_as = run(scenario)
    assert outcome == "conflict"
    assert joined_as == f"{ROOM}/Jane Doe"


def test_register_and_unregister_nick_cli(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    added = _xmppd(server.config_path, "register-nick", "Carol", "carol@localhost")
    assert added.returncode == 0, added.stderr
    assert _nicks(server.database_url) == {"Carol": "carol@localhost"}
    bad = _xmppd(server.config_path, "register-nick", "\u200bCarol", "eve@localhost")
    assert bad.returncode == 1  # zero-width characters are refused
    gone = _xmppd(server.config_path, "unregister-nick", "carol")  # case-insensitive match
    assert gone.returncode == 0, gone.stderr
    assert _nicks(server.database_url) == {}
    missing = _xmppd(server.config_path, "unregister-nick", "carol")
    assert missing.returncode == 1


def test_running_server_syncs_new_forum_members(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    phpbb_db.add_user("early bird", password_hash=_bcrypt("pw"))
    auth = {"backend": "phpbb", "phpbb": {"url": phpbb_db.url}}
    muc = {"sync_nicks_interval": 0.5, "nick_reload_interval": 0.5}
    with running_server(tmp_path, auth=auth, muc=muc) as live:
        deadline = time.monotonic() + 10
        while "early bird" not in _nicks(live.database_url):  # synced at start-up
            assert time.monotonic() < deadline, live.log()[-2000:]
            time.sleep(0.1)
        phpbb_db.add_user("Newcomer", password_hash=_bcrypt("pw"))
        while _nicks(live.database_url).get("Newcomer") != "newcomer@localhost":
            assert time.monotonic() < deadline + 5, live.log()[-2000:]
            time.sleep(0.1)
        assert "event=nicks_synced" in live.log()
