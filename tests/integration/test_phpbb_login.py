"""Forum members log in to a real xmppd with slixmpp, against the forum's real database."""

from __future__ import annotations

import time
from pathlib import Path

import bcrypt
import pytest

from tests.phpbb.fixtures import PhpbbDatabase, phpbb_db  # noqa: F401 - fixture
from tests.slix import AuthFailed, login, run
from tests.xmppd_process import running_server

pytestmark = pytest.mark.integration


def _bcrypt(password: str) -> str:
    return (
        bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    )


def test_session_id_and_password_logins(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    now = int(time.time())
    jane = phpbb_db.add_user("Jane Doe", password_hash=_bcrypt("forum pw"))
    sid = phpbb_db.add_session(jane, session_time=now)
    stale = phpbb_db.add_session(jane, session_time=now - 3 * 3600)
    bob = phpbb_db.add_user("bob", password_hash=_bcrypt("bobpw"))
    bob_sid = phpbb_db.add_session(bob, session_time=now)

    with running_server(
        tmp_path, auth={"backend": "phpbb", "phpbb": {"url": phpbb_db.url}}
    ) as server:
        jid = "jane\\20doe@localhost"

        async def with_sid() -> tuple[str, str]:
            jane_client = await login(server, jid + "/web", sid)
            bob_client = await login(server, "bob@localhost/desk", "bobpw")
            jane_client.send_message(mto="bob@localhost", mbody="hi from the forum", mtype="chat")
            msg = await bob_client.next_message()
            bound = str(jane_client.boundjid)
            await jane_client.close()
            await bob_client.close()
            return bound, str(msg["from"])

        bound, sender = run(with_sid)
        assert bound == jid + "/web"
        assert sender == jid + "/web"

        async def with_password() -> str:
            client = await login(server, jid + "/desk", "forum pw")
            bound = str(client.boundjid)
            await client.close()
            return bound

        assert run(with_password) == jid + "/desk"

        for who, secret in ((jid, stale), (jid, bob_sid), (jid, "wrong password")):

            async def refused(who: str = who, secret: str = secret) -> None:
                await login(server, who + "/x", secret)

            with pytest.raises(AuthFailed):
                run(refused)
        log = server.log()
        for secret in (sid, stale, bob_sid):
            assert secret not in log
