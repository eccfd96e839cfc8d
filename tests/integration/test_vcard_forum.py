"""Forum members' vCards start from the forum (username, avatar), and their password
belongs to the forum: a real ``xmppd serve`` on the phpBB backend, the forum's real
database (MariaDB and PostgreSQL) and slixmpp's xep_0054/xep_0077 over real sockets."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from slixmpp.exceptions import IqError

from tests.phpbb.fixtures import PhpbbDatabase, phpbb_db  # noqa: F401 - fixture
from tests.slix import login, run
from tests.xmppd_process import running_server

pytestmark = pytest.mark.integration

VCARD = "vcard-temp"
REGISTER = "jabber:iq:register"
UPDATE = "vcard-temp:x:update"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2b3a8b60000000049454e44ae426082"
)


def _bcrypt(password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return hashed.replace("$2b$", "$2y$")


def _avatar(db: PhpbbDatabase, user_id: int, kind: str, value: str) -> None:
    db.execute(
        "UPDATE {p}users SET user_avatar = :v, user_avatar_type = :k WHERE user_id = :u",
        v=value,
        k=kind,
        u=user_id,
    )


def _card(iq: Any) -> tuple[dict[str, str], str]:
    card = iq.xml.find(f"{{{VCARD}}}vCard")
    fields = {}
    for el in card.iter():
        if el is not card and len(el) == 0:
            fields[el.tag.split("}")[1]] = el.text or ""
    return fields, str(iq)


def test_forum_vcards_and_forum_passwords(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    jane = phpbb_db.add_user("Jane Doe", password_hash=_bcrypt("forum pw"), email="jane@mail.test")
    bob = phpbb_db.add_user("bob", password_hash=_bcrypt("bobpw"), email="bob@mail.test")
    carol = phpbb_db.add_user("carol", email="carol@mail.test")
    dave = phpbb_db.add_user("dave")
    phpbb_db.set_config("avatar_salt", "s4lt")
    _avatar(phpbb_db, jane, "avatar.driver.upload", f"{jane}_1700000000.png")
    _avatar(phpbb_db, bob, "avatar.driver.remote", "https://img.example.net/bob.gif")
    _avatar(phpbb_db, carol, "avatar.driver.gravatar", "carol@mail.test")
    _avatar(phpbb_db, dave, "avatar.driver.local", "cats/tabby.jpg")  # no file here
    forum = tmp_path / "forum"
    upload = forum / "images" / "avatars" / "upload"
    upload.mkdir(parents=True)
    (upload / f"s4lt_{jane}.png").write_bytes(PNG)

    data = tmp_path / "data"
    data.mkdir()
    with running_server(
        data,
        auth={"backend": "phpbb", "phpbb": {"url": phpbb_db.url}},
        vcard={"forum_path": str(forum), "forum_url": "https://forum.example.org/"},
    ) as server:

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            me = await login(
                server,
                "jane\\20doe@localhost/web",
                "forum pw",
                plugins=["xep_0054", "xep_0077", "xep_0060"],
            )
            # XEP-0398 §4: the forum avatar's hash is in the member's presence
            own = await me.next_presence(match=lambda p: p["from"] == me.boundjid, timeout=5)
            out["own_hash"] = own.xml.findtext(f"{{{UPDATE}}}x/{{{UPDATE}}}photo")
            # ... and, at the first presence, it is published as her XEP-0084 avatar
            meta = await me.plugin["xep_0060"].get_items(None, "urn:xmpp:avatar:metadata")
            info = meta.xml.find(".//{urn:xmpp:avatar:metadata}info")
            out["pep_avatar"] = None if info is None else (info.get("id"), info.get("width"))
            vcards = me.plugin["xep_0054"]
            for who in ("jane\\20doe", "bob", "carol", "dave"):
                out[who] = _card(await vcards.get_vcard(f"{who}@localhost"))
            info = await me.plugin["xep_0030"].get_info(jid="localhost")
            out["features"] = info["disco_info"]["features"]
            out["registered"] = (await me.plugin["xep_0077"].get_registration())["register"][
                "registered"
            ]
            try:
                await me.plugin["xep_0077"].change_password("new", jid="localhost")
                out["change"] = "changed"
            except IqError as exc:
                out["change"] = exc.condition
            # a vCard the member sets replaces the forum's
            card = vcards.make_vcard()
            card["FN"] = "J. Doe"
            await vcards.publish_vcard(card)
            out["own"] = _card(await vcards.get_vcard("jane\\20doe@localhost"))[0]
            await me.close()
            again = await login(server, "jane\\20doe@localhost/desk", "forum pw")
            out["old_password"] = str(again.boundjid)
            await again.close()
            return out

        out = run(scenario, timeout=60)

    jane_card = out["jane\\20doe"][0]
    assert jane_card == {
        "FN": "Jane Doe",
        "NICKNAME": "Jane Doe",
        "TYPE": "image/png",
        "BINVAL": base64.b64encode(PNG).decode(),
    }
    assert out["own_hash"] == hashlib.sha1(PNG).hexdigest()  # noqa: S324 - XEP-0153's hash
    assert out["pep_avatar"] == (hashlib.sha1(PNG).hexdigest(), "1")  # noqa: S324
    assert out["bob"][0] == {
        "FN": "bob",
        "NICKNAME": "bob",
        "EXTVAL": "https://img.example.net/bob.gif",
    }
    assert out["carol"][0] == {"FN": "carol", "NICKNAME": "carol"}  # gravatar: no email
    assert out["dave"][0] == {
        "FN": "dave",
        "NICKNAME": "dave",
        "EXTVAL": "https://forum.example.org/images/avatars/gallery/cats/tabby.jpg",
    }
    for _, xml in (out[w] for w in ("jane\\20doe", "bob", "carol", "dave")):
        assert "mail.test" not in xml and "$2y$" not in xml
    assert VCARD in out["features"] and REGISTER not in out["features"]
    assert out["registered"] is True
    assert out["change"] == "not-allowed"
    assert out["own"] == {"FN": "J. Doe"}
    assert out["old_password"] == "jane\\20doe@localhost/desk"
