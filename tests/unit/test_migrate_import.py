"""``xmppd import``'s rules on SQLite: roster letters, SCRAM columns, domain mapping, nick
collisions, passwords -> keys, idempotency, --dry-run, --replace, --strict, and the login
of an account imported with one SCRAM hash's keys."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.db_fixtures import upgraded_database, verifies  # noqa: E402
from xmppd.auth.base import AuthContext, AuthError  # noqa: E402
from xmppd.auth.internal import InternalAuthenticator  # noqa: E402
from xmppd.auth.scram import derive_scram  # noqa: E402
from xmppd.cli_import import _print_report  # noqa: E402
from xmppd.migrate import model as m  # noqa: E402
from xmppd.migrate.domains import DomainMap, parse_mapping  # noqa: E402
from xmppd.migrate.ejabberd_sql import roster_states, scram_of  # noqa: E402
from xmppd.migrate.importer import Importer, Options  # noqa: E402
from xmppd.migrate.stanzas import room_stanza  # noqa: E402
from xmppd.muc.mam import MamQuery  # noqa: E402
from xmppd.muc.roles import REASON_MAX  # noqa: E402
from xmppd.storage import AsyncDatabase, Database  # noqa: E402
from xmppd.storage.models import muc_messages, muc_nicks  # noqa: E402
from xmppd.storage.muc import MucStore, Write  # noqa: E402
from xmppd.stream.mechanisms import offered_mechanisms  # noqa: E402

DOMAIN, MUC = "new.example", "conference.new.example"
SECURE = AuthContext(peer_ip="127.0.0.1", transport="test", secure=True)


class ListSource:
    """Records in memory, by kind: the importer's contract without a reader."""

    description = "records in a test"

    def __init__(self, *items: m.Record | m.Problem) -> None:
        self.items = items

    def read(self, kind: m.Kind) -> Iterator[m.Record | m.Problem]:
        for item in self.items:
            if isinstance(item, m.Problem) and item.kind is kind:
                yield item
            elif m.KIND_OF.get(type(item)) is kind:
                yield item

    def estimate(self, kind: m.Kind) -> int | None:
        return None


@pytest.fixture
def db() -> Iterator[Database]:
    with upgraded_database("sqlite") as database:
        yield database


def run(db: Database | None, source: ListSource, **options: object) -> object:
    return Importer(db, DOMAIN, MUC, Options(**options)).run(source)  # type: ignore[arg-type]


def ejabberd_keys(password: str, hash_name: str) -> m.ScramKeys:
    """SCRAM columns as ejabberd 23.01 stores them (base64, a prefix for SHA-256)."""
    creds = derive_scram(password, hash_name, iterations=4096)  # type: ignore[arg-type]
    prefix = {"sha1": "", "sha256": "sha256:"}[hash_name]
    return scram_of(
        prefix + base64.b64encode(creds.stored_key).decode(),
        base64.b64encode(creds.server_key).decode(),
        base64.b64encode(creds.salt).decode(),
        creds.iterations,
    )


# -------------------------------------------------------------------- pure rules
def test_roster_letters() -> None:
    assert roster_states("B", "N") == ("both", False, False)
    assert roster_states("T", "N") == ("to", False, False)
    assert roster_states("F", "O") == ("from", True, False)
    assert roster_states("N", "S") == ("none", True, False)
    assert roster_states("N", "I") == ("none", False, True)
    assert roster_states("N", "B") == ("none", True, True)
    assert roster_states("B", "U") == ("both", False, False)
    with pytest.raises(ValueError):
        roster_states("X", "N")


def test_scram_columns_name_their_hash() -> None:
    assert ejabberd_keys("pw", "sha1").hash_name == "sha1"
    assert ejabberd_keys("pw", "sha256").hash_name == "sha256"
    keys = scram_of("sha512:" + base64.b64encode(b"k" * 64).decode(), "c2s=", "c2FsdA==", 4096)
    assert keys.hash_name == "sha512" and keys.salt == b"salt"
    with pytest.raises(ValueError):
        scram_of("not base64!", "x", "y", 4096)


def test_domain_mapping() -> None:
    dm = DomainMap([parse_mapping("old.example=new.example")])
    assert dm.jid("a@old.example/res") == "a@new.example/res"
    assert dm.jid("room@conference.old.example") == "room@conference.new.example"
    assert dm.jid("a@notold.example") == "a@notold.example"
    assert dm.jid("old.example") == "new.example"
    xml = ('<message xmlns="jabber:client" from="room@conference.old.example/n" '
           'to="b@old.example"><stanza-id xmlns="urn:xmpp:sid:0" by="room@conference.old.example"'
           ' id="1"/><body>old.example stays in text</body></message>')  # fmt: skip
    out = dm.stanza(xml)
    assert 'from="room@conference.new.example/n"' in out and 'to="b@new.example"' in out
    assert 'by="room@conference.new.example"' in out and "old.example stays in text" in out
    for bad in ("nodomain", "a@b=c", "=x"):
        with pytest.raises(ValueError):
            parse_mapping(bad)


def test_room_stanza_is_what_xmppd_archives() -> None:
    xml = ('<message xmlns="jabber:client" from="alice@new.example/phone" to="r@conference.'
           'new.example" type="groupchat" id="m1"><body>hi</body><stanza-id xmlns="urn:xmpp:sid:0"'
           ' by="r@conference.new.example" id="99"/><x xmlns="http://jabber.org/protocol/muc#user"/>'
           "</message>")  # fmt: skip
    out = room_stanza(xml, "r@conference.new.example", "Alice", "1700000000123456")
    assert 'from="r@conference.new.example/Alice"' in out and " to=" not in out
    assert out.count("stanza-id") == 1 and 'id="1700000000123456"' in out
    assert "muc#user" not in out and "<body>hi</body>" in out


# -------------------------------------------------------------------- accounts
def test_passwords_become_keys_and_scram_keys_are_kept(db: Database) -> None:
    sha1 = ejabberd_keys("sha1 secret", "sha1")
    sha256 = ejabberd_keys("sha256 secret", "sha256")
    src = ListSource(
        m.Account(f"plain@{DOMAIN}", password="plain secret"),
        m.Account(f"one@{DOMAIN}", scram=sha1),
        m.Account(f"two@{DOMAIN}", scram=sha256),
        m.Account(f"big@{DOMAIN}", scram=m.ScramKeys("sha512", b"s", 4096, b"k", b"k")),
        m.Account("stranger@elsewhere.example", password="x"),
    )
    report = run(db, src)
    assert report.written[m.Kind.ACCOUNTS].added == 4  # type: ignore[attr-defined]
    texts = [p.text for p in report.problems]  # type: ignore[attr-defined]
    assert any("SCRAM-SHA512" in t for t in texts) and any("not an account" in t for t in texts)
    for hash_name in ("sha1", "sha256"):
        assert verifies(db.get_scram("plain", hash_name), "plain secret", hash_name)
    assert verifies(db.get_scram("one", "sha1"), "sha1 secret", "sha1")
    assert db.get_scram("one", "sha256") is None  # no keys for that hash: not offered
    assert verifies(db.get_scram("two", "sha256"), "sha256 secret", "sha256")
    assert db.get_scram("big", "sha1") is None and db.user_exists("big")
    assert "secret" not in repr(src.items) and "secret" not in repr(report)


async def test_an_account_with_sha1_keys_only_logs_in(db: Database) -> None:
    run(db, ListSource(m.Account(f"one@{DOMAIN}", scram=ejabberd_keys("pw one", "sha1"))))
    auth = InternalAuthenticator(AsyncDatabase(db))
    assert auth.scram_hashes == ("sha1",)
    offered = offered_mechanisms(DOMAIN, scram=True, hashes=auth.scram_hashes)
    assert list(offered) == ["SCRAM-SHA-1", "PLAIN"]  # a SHA-256-first client cannot fail
    assert await auth.scram_credentials("one", "sha256") is None
    assert await auth.scram_credentials("one", "sha1") is not None
    with pytest.raises(AuthError):
        await auth.check_password("one", "wrong", SECURE)
    assert (await auth.check_password("one", "pw one", SECURE)).localpart == "one"
    # the PLAIN login over TLS derived the SHA-256 keys: the next start offers both again
    assert verifies(db.get_scram("one", "sha256"), "pw one", "sha256")
    assert InternalAuthenticator(AsyncDatabase(db)).scram_hashes == ("sha1", "sha256")


# -------------------------------------------------------------------- nicks
def _room(name: str = "lobby") -> m.Room:
    return m.Room(f"{name}@{MUC}", title=name.title())


def test_nick_collisions_are_reported_and_the_first_wins(db: Database) -> None:
    src = ListSource(
        _room(),
        m.RegisteredNick(MUC, f"alice@{DOMAIN}", "Admin"),
        m.RegisteredNick(MUC, f"bob@{DOMAIN}", "admin"),  # same PRECIS key
        m.RegisteredNick(MUC, f"carol@{DOMAIN}", "\u0410dmin"),  # Cyrillic A: a look-alike
        m.RegisteredNick(MUC, f"dave@{DOMAIN}", "Dave"),
        m.RegisteredNick(f"lobby@{MUC}", f"erin@{DOMAIN}", "Erin"),
        m.RegisteredNick(f"ghost@{MUC}", f"fred@{DOMAIN}", "Fred"),  # no such room
    )
    report = run(db, src)
    with db.connection() as conn:
        rows = set(conn.execute(sa.select(muc_nicks.c.room, muc_nicks.c.nick, muc_nicks.c.jid)))
    assert rows == {("", "Admin", f"alice@{DOMAIN}"), ("", "Dave", f"dave@{DOMAIN}"),
                    ("lobby", "Erin", f"erin@{DOMAIN}")}  # fmt: skip
    nick_problems = [p for p in report.problems if p.kind is m.Kind.NICKS]  # type: ignore[attr-defined]
    assert len(nick_problems) == 3
    assert sum(f"alice@{DOMAIN}" in p.text for p in nick_problems) == 2  # both name the holder
    again = run(db, src)
    assert again.written[m.Kind.NICKS].skipped == 3  # type: ignore[attr-defined]


# ----------------------------------------------------------- runs and options
def _messages(n: int) -> list[m.RoomMessage]:
    room = f"lobby@{MUC}"
    return [
        m.RoomMessage(
            room,
            str(1_700_000_000_000_000 + i),
            datetime(2024, 1, 1, 0, 0, i),
            "n",
            f"alice@{DOMAIN}",
            room_stanza(
                f'<message xmlns="jabber:client"><body>{i}</body></message>',
                room,
                "n",
                str(1_700_000_000_000_000 + i),
            ),
        )
        for i in range(n)
    ]


def _archive(db: Database) -> list[str]:
    with db.connection() as conn:
        q = sa.select(muc_messages.c.stanza_id).order_by(muc_messages.c.id)
        return list(conn.execute(q).scalars())


def test_import_twice_dry_run_replace_strict(db: Database) -> None:
    src = ListSource(_room(), *_messages(7), m.VCard(f"a@{DOMAIN}", "<vCard xmlns='vcard-temp'/>"))
    dry = run(db, src, dry_run=True, batch=3)
    assert dry.read[m.Kind.ROOM_ARCHIVE] == 7 and _archive(db) == []  # type: ignore[attr-defined]
    with db.connection() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM vcards")).scalar() == 0
    first = run(db, src, batch=3)
    assert first.written[m.Kind.ROOM_ARCHIVE].added == 7  # type: ignore[attr-defined]
    ids = _archive(db)
    assert ids == sorted(ids) and len(ids) == 7
    second = run(db, src, batch=3)
    assert second.written[m.Kind.ROOM_ARCHIVE].skipped == 7 and _archive(db) == ids  # type: ignore[attr-defined]
    changed = ListSource(m.Room(f"lobby@{MUC}", title="Renamed"))
    assert run(db, changed).written[m.Kind.ROOMS].skipped == 1  # type: ignore[attr-defined]
    assert run(db, changed, replace=True).written[m.Kind.ROOMS].replaced == 1  # type: ignore[attr-defined]
    with db.connection() as conn:
        settings = conn.execute(sa.text("SELECT settings_json FROM muc_rooms")).scalar_one()
    assert '"Renamed"' in settings
    bad = ListSource(_room("other"), m.VCard("x@elsewhere.example", "<vCard xmlns='vcard-temp'/>"))
    strict = run(db, bad, strict=True)
    assert len(strict.problems) == 1  # type: ignore[attr-defined]
    with db.connection() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM muc_rooms WHERE name='other'")).scalar() == 0
        )
    assert run(db, bad).written[m.Kind.ROOMS].added == 1  # type: ignore[attr-defined]


def test_problems_of_the_reader_are_listed_not_fatal(db: Database) -> None:
    subject = (f'<message xmlns="jabber:client" from="lobby@{MUC}/n" type="groupchat">'
               "<subject>New topic</subject></message>")  # fmt: skip
    src = ListSource(
        _room(),
        m.Problem(m.Kind.ROOM_ARCHIVE, "archive 42", "not well-formed XML"),
        *_messages(2),
        m.RoomMessage(f"gone@{MUC}", "5", datetime(2024, 1, 1), "n", "", "<message/>"),
        m.RoomMessage(f"lobby@{MUC}", "6", datetime(2024, 1, 1), "n", "", subject),
    )
    report = run(db, src, strict=True)
    wheres = sorted(p.where for p in report.problems)  # type: ignore[attr-defined]
    assert wheres[0] == "archive 42" and len(wheres) == 2  # the subject change is no problem
    assert _archive(db) == []  # --strict: nothing written
    report = run(db, src)
    assert report.written[m.Kind.ROOM_ARCHIVE].left_out == 1  # type: ignore[attr-defined]
    assert len(_archive(db)) == 2


def test_domains_are_mapped_before_they_are_checked(db: Database) -> None:
    old = "old.example"
    room = f"lobby@conference.{old}"
    src = ListSource(
        m.Account(f"alice@{old}", password="pw"),
        m.Room(room),
        m.RoomMessage(room, "1", datetime(2024, 1, 1), "A", f"alice@{old}",
                      room_stanza('<message xmlns="jabber:client"><body>x</body></message>', room,
                                  "A", "1")),
    )  # fmt: skip
    unmapped = run(None, src, dry_run=True)
    assert len(unmapped.problems) == 3  # type: ignore[attr-defined]
    report = run(db, src, domains=DomainMap([("old.example", DOMAIN)]))
    assert report.problems == []  # type: ignore[attr-defined]
    with db.connection() as conn:
        row = conn.execute(sa.select(muc_messages.c.sender, muc_messages.c.stanza)).one()
    assert row.sender == f"alice@{DOMAIN}" and f'by="lobby@{MUC}"' in row.stanza
    assert f'from="lobby@{MUC}/A"' in row.stanza


# ------------------------------------------------------ reasons, destroyed rooms
def test_affiliations_keep_their_reasons(db: Database) -> None:
    room = f"lobby@{MUC}"
    src = ListSource(
        _room(),
        m.Affiliation(room, f"bob@{DOMAIN}", "outcast", "Spam & worse"),
        m.Affiliation(room, "spam.example", "outcast"),
        m.Affiliation(room, f"carol@{DOMAIN}", "member", " " + "r" * (REASON_MAX + 20)),
        m.Affiliation(f"ghost@{MUC}", f"bob@{DOMAIN}", "member", "no room"),
    )
    report = run(db, src)
    problems = sorted((p.where, p.text) for p in report.problems)  # type: ignore[attr-defined]
    assert problems == [
        (f"bob@{DOMAIN}", "no room 'ghost' in xmppd nor in the import"),
        (f"{room} carol@{DOMAIN}", f"reason cut to {REASON_MAX} characters"),
    ]
    (stored,) = MucStore(db).load_rooms()
    assert stored.affiliations == {f"bob@{DOMAIN}": "outcast", "spam.example": "outcast",
                                   f"carol@{DOMAIN}": "member"}  # fmt: skip
    assert stored.reasons == {f"bob@{DOMAIN}": "Spam & worse", f"carol@{DOMAIN}": "r" * REASON_MAX}
    again = run(db, src)
    assert again.written[m.Kind.AFFILIATIONS].skipped == 3  # type: ignore[attr-defined]
    changed = ListSource(m.Affiliation(room, f"bob@{DOMAIN}", "outcast", "Changed"))
    run(db, changed, replace=True)
    assert MucStore(db).load_rooms()[0].reasons[f"bob@{DOMAIN}"] == "Changed"


def _gone(n: int) -> list[m.RoomMessage]:
    """Messages of the room "gone", which exists neither in xmppd nor in the import."""
    room = f"gone@{MUC}"
    return [
        m.RoomMessage(room, f"g{i}", datetime(2024, 1, 2, 0, 0, i), "ann", f"ann@{DOMAIN}",
                      room_stanza(f'<message xmlns="jabber:client"><body>g{i}</body></message>',
                                  room, "ann", f"g{i}"))
        for i in range(n)
    ]  # fmt: skip


def _rows(db: Database, room: str) -> list[tuple[object, ...]]:
    c = muc_messages.c
    with db.connection() as conn:
        q = sa.select(c.stanza_id, c.stamp, c.nick, c.sender, c.stanza, c.origin_id)
        return [tuple(r) for r in conn.execute(q.where(c.room == room).order_by(c.id))]


def test_the_archive_of_a_room_that_no_longer_exists_is_kept(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    src = ListSource(_room(), *_messages(2), *_gone(3))
    strict = run(db, src, strict=True)  # no problem: written even under --strict
    assert strict.problems == [] and strict.archive_only == {"gone": 3}  # type: ignore[attr-defined]
    assert strict.written[m.Kind.ROOM_ARCHIVE].added == 5  # type: ignore[attr-defined]
    _print_report(strict, "records in a test", False)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert (
        "archives of 1 room(s) that do not exist, kept as a destroyed room's (3 messages): gone"
        in out
    )
    assert [s.name for s in MucStore(db).load_rooms()] == ["lobby"]  # no room comes back
    assert run(db, src).written[m.Kind.ROOM_ARCHIVE].skipped == 5  # type: ignore[attr-defined]

    # exactly what xmppd holds after destroying a room that had these messages
    with upgraded_database("sqlite") as own:
        store = MucStore(own)
        room = {"name": "gone", "settings_json": "{}", "subject": "", "subject_nick": ""}
        store.write_batch(
            [Write("room", room)]
            + [Write("message", {"room": "gone", "stanza_id": r.stanza_id, "stamp": r.stamp.replace(
                tzinfo=UTC), "nick": r.nick, "sender": r.sender, "stanza": r.stanza,
                "origin_id": None}) for r in _gone(3)]
            + [Write("room_delete", {"name": "gone"})]
        )  # fmt: skip
        assert store.load_rooms() == []
        assert _rows(db, "gone") == _rows(own, "gone") and len(_rows(own, "gone")) == 3
    # found as xmppd finds a destroyed room's archive: by MAM and the join history of a
    # room made again under that name
    page = MucStore(db).query_archive("gone", MamQuery(queryid=None))
    assert [msg.stanza_id for msg in page.messages] == ["g0", "g1", "g2"]
    assert [r[0] for r in MucStore(db).load_recent("gone", 10)] == ["g0", "g1", "g2"]
