"""``xmppd export`` → XEP-0227 file → reader: the same records, kind by kind.

The database is filled through the storage layer (the same calls the services make), so
the rows look like the server's own; the MUC archive and account archive get enough rows
to cross the export's fetch batches.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from tests.db_fixtures import FAST, upgraded_database
from xmppd.migrate.model import Kind, Problem, RoomMessage
from xmppd.migrate.xep0227 import Xep0227Source
from xmppd.migrate.xep0227_writer import WriteError, write_xep0227
from xmppd.migrate.xmppd_source import XmppdSource
from xmppd.muc.mam import MamQuery
from xmppd.muc.roomconfig import RoomSettings
from xmppd.storage import Database, RosterItem
from xmppd.storage.account_mam import AccountArchiveStore, ArchiveRow
from xmppd.storage.export import BATCH
from xmppd.storage.muc import MucStore, Write
from xmppd.storage.private_xml import PrivateXmlStore, Quota
from xmppd.storage.vcard import VcardStore

D, MUC = "example.org", "conference.example.org"
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def x(text: str) -> str:
    """``text`` as the server stores XML: serialised by lxml (archived messages carry the
    archive's stanza-id, as the room and the account archive put it in)."""
    return etree.tostring(etree.fromstring(text), encoding="unicode")


def populate(db: Database, archive: int = BATCH + 5, destroyed_room: bool = True) -> None:
    for name in ("alice", "bob", "zoë"):
        db.create_user(name, f"pw-{name}", iterations=FAST)
    db.put_roster_item(f"alice@{D}", RosterItem(f"bob@{D}", "Bob", "both", groups=("A", "Ü")))
    db.put_roster_item(f"alice@{D}", RosterItem("carol@other.net", None, "none", ask_out=True))
    db.put_roster_item(f"bob@{D}", RosterItem("dave@other.net", "D", "from", pending_in=True,
                                              approved=True))  # fmt: skip
    # an account of the forum (phpbb backend): data without a users row
    db.put_roster_item(f"forum@{D}", RosterItem(f"alice@{D}", "A", "to"))
    db.add_pending_subscription(
        f"bob@{D}", "eve@other.net", x(
        f"<presence xmlns='jabber:client' from='eve@other.net/x' to='bob@{D}' type='subscribe'>"
        "<status>hi &amp; bye</status></presence>"),
    )  # fmt: skip
    db.store_offline(
        f"alice@{D}",
        x(
            f"<message xmlns='jabber:client' from='bob@{D}/r' to='alice@{D}' type='chat'>"
            f"<body>while you were out</body><delay xmlns='urn:xmpp:delay' from='{D}' "
            "stamp='2026-01-02T03:04:05.678Z'/></message>"
        ),
    )
    db.store_offline(
        f"zoë@{D}", x("<message xmlns='jabber:client' to='x'><body>none</body></message>")
    )
    VcardStore(db).put(
        f"alice@{D}", x("<vCard xmlns='vcard-temp'><FN>Alice &lt;A&gt;</FN></vCard>")
    )
    quota = Quota(100_000, 1_000_000, 100)
    private = PrivateXmlStore(db)
    private.put(
        f"alice@{D}",
        "storage:bookmarks",
        x("<storage xmlns='storage:bookmarks'><conference jid='r@x'/></storage>"),
        quota,
    )
    two = x("<exodus xmlns='exodus:prefs'><a/></exodus>") + x("<exodus xmlns='exodus:prefs'/>")
    private.put(f"alice@{D}", "exodus:prefs", two, quota)
    AccountArchiveStore(db).write_batch([
        ArchiveRow(f"bob@{D}", f"m{i}", f"alice@{D}", "phone" if i % 2 else "", i % 3 == 0,
                   T0 + timedelta(seconds=i),
                   x(f"<message xmlns='jabber:client' type='chat'><body>{i}</body>"
                     f"<stanza-id xmlns='urn:xmpp:sid:0' id='m{i}' by='bob@{D}'/></message>"))
        for i in range(archive)
    ])  # fmt: skip
    settings = RoomSettings(title="Lobby", description="Talk", members_only=True,
                            password="s3cret", whois="moderators", max_occupants=50)  # fmt: skip
    writes = [
        Write("room", {"name": "lobby", "settings_json": settings.to_json(),
                       "subject": "Welcome", "subject_nick": "alice"}),
        Write("room", {"name": "quiet", "settings_json": RoomSettings().to_json(),
                       "subject": "", "subject_nick": ""}),
        Write("affiliation", {"room": "lobby", "jid": f"alice@{D}", "affiliation": "owner"}),
        Write("affiliation", {"room": "lobby", "jid": "other.net", "affiliation": "outcast",
                              "reason": "Spam <&> \u00e9"}),
        Write("affiliation", {"room": "lobby", "jid": f"zoë@{D}", "affiliation": "member",
                              "reason": "Plays the sax"}),
        Write("nick", {"room": "lobby", "jid": f"bob@{D}", "nick": "Bobby"}),
        Write("nick", {"room": "", "jid": f"alice@{D}", "nick": "Alice"}),
    ]  # fmt: skip
    writes += [
        Write("message", {"room": room, "stanza_id": f"{room}-{i}", "stamp": T0 + timedelta(
            milliseconds=i), "nick": "bob", "sender": f"bob@{D}" if i % 2 else "",
            "stanza": x(f"<message xmlns='jabber:client' from='{room}@{MUC}/bob' type='groupchat'>"
                        f"<body>line {i} &lt;3</body><stanza-id xmlns='urn:xmpp:sid:0' "
                        f"id='{room}-{i}' by='{room}@{MUC}'/></message>"), "origin_id": None})
        for room, count in (("lobby", archive), ("gone", 3 if destroyed_room else 0))
        # "gone": a destroyed room, whose archive xmppd keeps
        for i in range(count)
    ]  # fmt: skip
    MucStore(db).write_batch(writes)


def records(source: object, kind: Kind) -> list[object]:
    return list(source.read(kind))  # type: ignore[attr-defined]


@pytest.fixture
def db() -> Iterator[Database]:
    with upgraded_database("sqlite") as database:
        populate(database)
        yield database


def export(db: Database, path: Path) -> XmppdSource:
    source = XmppdSource(db, D, MUC)
    with path.open("wb") as out:
        result = write_xep0227(source, out)
    assert result.problems == []
    return source


def test_every_kind_reads_back_equal(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "export.xml"
    source = export(db, path)
    back = Xep0227Source(path)
    for kind in Kind:
        want = records(source, kind)
        got = [r for r in records(back, kind) if not isinstance(r, Problem)]
        assert not [r for r in want if isinstance(r, Problem)]
        key = repr
        assert sorted(got, key=key) == sorted(want, key=key), kind
        assert want, f"the test should cover {kind}"
    # the only problem: nothing (the forum account is marked external)
    assert [p for k in Kind for p in records(back, k) if isinstance(p, Problem)] == []


def test_archives_keep_their_order_and_ids(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "export.xml"
    export(db, path)
    room = [
        r for r in records(Xep0227Source(path), Kind.ROOM_ARCHIVE) if isinstance(r, RoomMessage)
    ]
    lobby = [r.stanza_id for r in room if r.room == f"lobby@{MUC}"]
    assert lobby == [f"lobby-{i}" for i in range(BATCH + 5)]
    assert [r.stanza_id for r in room if r.room == f"gone@{MUC}"] == ["gone-0", "gone-1", "gone-2"]
    # a destroyed room's archive is kept, but no room comes back for it
    rooms = [r.jid for r in records(Xep0227Source(path), Kind.ROOMS)]  # type: ignore[attr-defined]
    assert rooms == [f"lobby@{MUC}", f"quiet@{MUC}"]


def test_export_twice_is_byte_identical(db: Database, tmp_path: Path) -> None:
    export(db, tmp_path / "a.xml")
    export(db, tmp_path / "b.xml")
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()


def test_credentials_are_scram_keys_that_verify(db: Database, tmp_path: Path) -> None:
    from tests.db_fixtures import verifies

    path = tmp_path / "export.xml"
    export(db, path)
    text = path.read_text()
    assert "pw-alice" not in text and "password=" not in text
    accounts = {a.jid: a for a in records(Xep0227Source(path), Kind.ACCOUNTS)}  # type: ignore[attr-defined]
    alice = accounts[f"alice@{D}"]
    assert alice.password is None
    keys = (alice.scram, *alice.more_scram)
    assert [k.hash_name for k in keys] == ["sha1", "sha256"]
    for k in keys:
        assert verifies(k, "pw-alice", k.hash_name) and not verifies(k, "pw-bob", k.hash_name)


def test_unordered_source_is_refused() -> None:
    class Backwards:
        description = "test"

        def read(self, kind: Kind) -> Iterator[object]:
            if kind is Kind.VCARDS:
                from xmppd.migrate.model import VCard

                yield VCard("b@x", "<vCard xmlns='vcard-temp'/>")
                yield VCard("a@x", "<vCard xmlns='vcard-temp'/>")

        def estimate(self, kind: Kind) -> None:
            return None

    with pytest.raises(WriteError, match="not ordered"):
        write_xep0227(Backwards(), io.BytesIO())  # type: ignore[arg-type]


def test_a_damaged_stored_stanza_is_a_problem_not_a_broken_file(tmp_path: Path) -> None:
    with upgraded_database("sqlite") as db:
        db.store_offline(f"alice@{D}", "<message xmlns='jabber:client'><body>ok</body></message>")
        db.store_offline(f"alice@{D}", "<message><body>cut")
        path = tmp_path / "export.xml"
        with path.open("wb") as out:
            result = write_xep0227(XmppdSource(db, D, MUC), out)
    assert [p.kind for p in result.problems] == [Kind.OFFLINE]
    assert result.counts[Kind.OFFLINE] == 1
    got = records(Xep0227Source(path), Kind.OFFLINE)
    assert len(got) == 1 and "ok" in got[0].stanza  # type: ignore[attr-defined]


def test_export_import_export_is_identical(tmp_path: Path) -> None:
    """The full round trip through ``xmppd import --from xep0227``'s importer: a fresh
    database filled from the export exports the same file again, byte for byte."""
    from xmppd.migrate.importer import Importer, Options

    first = tmp_path / "first.xml"
    with upgraded_database("sqlite") as original:
        populate(original)  # with a destroyed room's archive, and affiliations' reasons
        export(original, first)
    tree = etree.parse(str(first))
    xp = "{urn:xmppd:pie:muc:0}"
    rooms = {r.get("jid"): r.get("archive-only") for r in tree.iter(xp + "room")}
    assert rooms == {f"gone@{MUC}": "true", f"lobby@{MUC}": None, f"quiet@{MUC}": None}
    reasons = {a.get("jid"): a.text for a in tree.iter(xp + "affiliation")}
    assert reasons == {f"alice@{D}": None, "other.net": "Spam <&> \u00e9",
                       f"zoë@{D}": "Plays the sax"}  # fmt: skip
    with upgraded_database("sqlite") as fresh:
        report = Importer(fresh, D, MUC, Options()).run(Xep0227Source(first))
        assert report.problems == []
        assert report.archive_only == {"gone": 3}  # kept as xmppd keeps it after a destroy
        stored = {r.name: r for r in MucStore(fresh).load_rooms()}
        assert sorted(stored) == ["lobby", "quiet"]
        assert stored["lobby"].reasons == {"other.net": "Spam <&> \u00e9",
                                           f"zoë@{D}": "Plays the sax"}  # fmt: skip
        page = MucStore(fresh).query_archive("gone", MamQuery(queryid=None))
        assert [msg.stanza_id for msg in page.messages] == ["gone-0", "gone-1", "gone-2"]
        second = tmp_path / "second.xml"
        export(fresh, second)
        again = Importer(fresh, D, MUC, Options()).run(Xep0227Source(first))  # idempotent
        assert again.problems == []
        export(fresh, tmp_path / "third.xml")
    assert second.read_text() == first.read_text()
    assert (tmp_path / "third.xml").read_bytes() == first.read_bytes()
