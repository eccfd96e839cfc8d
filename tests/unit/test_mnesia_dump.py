"""Reading an ejabberd 23.01 Mnesia text dump (``ejabberdctl dump FILE``).

tests/data/mnesia_dump_2301.txt was printed by Erlang/OTP 25 (tests/data/
mnesia_dump_2301.escript) exactly as ``ejabberd_admin:dump_to_textfile/2`` prints (a
``{tables, Defs}`` header, ``io:format(F, "~p.~n", [Record])`` on a file opened with
``[write]``), with records in the shapes ejabberd 23.01 stores: the .hrl files and lines
cited in xmppd/migrate/mnesia_records.py. The file ends with a record cut short.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree

from xmppd.migrate.mnesia_dump import MnesiaDumpSource, looks_like_dump
from xmppd.migrate.model import (
    Account,
    Affiliation,
    Kind,
    Problem,
    RegisteredNick,
    Room,
    RosterItem,
)

DUMP = Path(__file__).parent.parent / "data" / "mnesia_dump_2301.txt"


@pytest.fixture(scope="module")
def source() -> MnesiaDumpSource:
    return MnesiaDumpSource(DUMP)


def _read(source: MnesiaDumpSource, kind: Kind) -> tuple[list, list[Problem]]:
    items = list(source.read(kind))
    return [i for i in items if not isinstance(i, Problem)], [
        i for i in items if isinstance(i, Problem)
    ]


def _scram_matches(password: str, keys) -> bool:  # type: ignore[no-untyped-def]
    """RFC 5802 §3: the keys are the ones the password gives."""
    salted = hashlib.pbkdf2_hmac(keys.hash_name, password.encode(), keys.salt, keys.iterations)
    client_key = hmac.digest(salted, b"Client Key", keys.hash_name)
    stored = hashlib.new(keys.hash_name, client_key).digest()
    server = hmac.digest(salted, b"Server Key", keys.hash_name)
    return hmac.compare_digest(stored, keys.stored_key) and server == keys.server_key


def test_accounts_plain_scram_and_old_scram(source: MnesiaDumpSource) -> None:
    accounts, problems = _read(source, Kind.ACCOUNTS)
    by_jid = {a.jid: a for a in accounts}
    assert list(by_jid) == ["alice@example.org", "bob@example.org", "carol@example.org"]
    assert by_jid["alice@example.org"] == Account("alice@example.org", password="wonderland")
    bob, carol = by_jid["bob@example.org"].scram, by_jid["carol@example.org"].scram
    assert bob is not None and (bob.hash_name, bob.iterations) == ("sha256", 4096)
    assert carol is not None and (carol.hash_name, carol.iterations) == ("sha1", 4096)
    assert bob.salt == b"0123456789abcdef"
    assert _scram_matches("b0b's pass", bob) and _scram_matches("carol", carol)
    assert not _scram_matches("carol!", carol)
    assert [(p.kind, p.where) for p in problems] == [
        (Kind.ACCOUNTS, "line 29"),  # dave's password is 42
        (None, "table last_activity"),
        (None, "table vcard_search"),
    ]
    assert "1 records not imported" in problems[1].text
    assert all("wonderland" not in p.text for p in problems)


def test_rosters_and_pending_subscriptions(source: MnesiaDumpSource) -> None:
    items, problems = _read(source, Kind.ROSTERS)
    assert items == [
        RosterItem(
            "alice@example.org", "bob@example.org", "Bob", "both", groups=("Friends", "Wörk")
        ),
        RosterItem("alice@example.org", "carol@example.org", "", "none", ask_out=True),
        # dave only asked (none + in): not a roster item, a pending subscription below
        RosterItem("alice@example.org", "erin@example.org", "Erin", "to", pending_in=True),
        RosterItem("bob@example.org", "alice@example.org", "Alice", "both"),
    ]
    # the record cut short at the end of the file is a roster record
    assert [(p.kind, p.where) for p in problems] == [(Kind.ROSTERS, "line 226")]
    pending, problems = _read(source, Kind.PENDING_SUBSCRIPTIONS)
    assert [(p.owner, p.from_jid) for p in pending] == [
        ("alice@example.org", "dave@example.org"),
        ("alice@example.org", "erin@example.org"),
    ]
    stanza = etree.fromstring(pending[0].stanza)
    assert stanza.tag == "{jabber:client}presence" and stanza.get("type") == "subscribe"
    assert stanza.findtext("{jabber:client}status") == "let me in"
    assert stanza.get("from") == "dave@example.org" and stanza.get("to") == "alice@example.org"


def test_offline_messages_keep_their_time_as_a_delay(source: MnesiaDumpSource) -> None:
    messages, problems = _read(source, Kind.OFFLINE)
    assert len(messages) == 1 and messages[0].owner == "bob@example.org"
    assert messages[0].stamp == datetime(2023, 11, 14, 22, 13, 20, 123456)
    el = etree.fromstring(messages[0].stanza)
    assert el.tag == "{jabber:client}message"
    assert el.findtext("{jabber:client}body") == '1 < 2 & "so" it goes'
    assert el.get("from") == "alice@example.org/phone" and el.get("to") == "bob@example.org"
    assert el.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    delay = el.find("{urn:xmpp:delay}delay")
    assert delay is not None and delay.get("stamp") == "2023-11-14T22:13:20.123456Z"
    assert delay.get("from") == "example.org"
    assert [p.where for p in problems] == ["line 68"]
    assert "expired" in problems[0].text


def test_vcards_and_private_storage(source: MnesiaDumpSource) -> None:
    (card,), problems = _read(source, Kind.VCARDS)
    assert problems == [] and card.owner == "alice@example.org"
    assert etree.fromstring(card.xml).findtext("{vcard-temp}FN") == "Alice Lié"
    (private,), problems = _read(source, Kind.PRIVATE_XML)
    assert problems == [] and private.namespace == "storage:bookmarks"
    conf = etree.fromstring(private.xml).find("{storage:bookmarks}conference")
    assert conf is not None and conf.get("jid") == "cafe@conference.example.org"


def test_rooms_affiliations_and_nicks(source: MnesiaDumpSource) -> None:
    rooms, problems = _read(source, Kind.ROOMS)
    assert rooms == [
        Room(
            jid="cafe@conference.example.org",
            title="Café ☕",
            description="Coffee talk",
            moderated=True,
            change_subject=True,
            max_occupants=200,
            subject="Beans & brews",
            subject_nick="Alice",
        )
    ]
    assert [(p.kind, p.where) for p in problems] == [(Kind.ROOMS, "line 138")]
    assert "broken@conference.example.org" in problems[0].text
    affiliations, problems = _read(source, Kind.AFFILIATIONS)
    assert problems == []
    assert affiliations == [
        Affiliation("cafe@conference.example.org", "alice@example.org", "owner"),
        Affiliation("cafe@conference.example.org", "troll@example.org", "outcast", "flooding"),
    ]
    nicks, problems = _read(source, Kind.NICKS)
    assert problems == [] and nicks == [
        RegisteredNick("conference.example.org", "alice@example.org", "Alice"),
        RegisteredNick("conference.example.org", "bob@example.org", "Böb"),
    ]


def test_archives(source: MnesiaDumpSource) -> None:
    room_msgs, problems = _read(source, Kind.ROOM_ARCHIVE)
    assert problems == []
    assert [(m.stanza_id, m.nick, m.sender) for m in room_msgs] == [
        (f"170000000000000{n}", "Bob", "bob@example.org") for n in (1, 2, 3)
    ]
    assert room_msgs[0].stamp == datetime(2023, 11, 14, 22, 13, 20, 1)
    el = etree.fromstring(room_msgs[2].stanza)
    assert el.get("from") == "cafe@conference.example.org/Bob" and el.get("to") is None
    assert el.get("type") == "groupchat" and el.findtext("{jabber:client}body") == "room line 3 ☺"
    chat, problems = _read(source, Kind.ACCOUNT_ARCHIVE)
    assert problems == []
    assert [(m.owner, m.stanza_id, m.with_jid, m.outgoing) for m in chat] == [
        ("alice@example.org", "1700000000000100", "bob@example.org/laptop", False),
        ("alice@example.org", "1700000000000200", "bob@example.org", True),
    ]


def test_estimates_count_without_parsing(source: MnesiaDumpSource) -> None:
    fresh = MnesiaDumpSource(DUMP)
    assert {k: fresh.estimate(k) for k in Kind} == {
        Kind.ACCOUNTS: 4,
        Kind.ROSTERS: 6,  # the cut-short record too
        Kind.PENDING_SUBSCRIPTIONS: 6,
        Kind.OFFLINE: 2,
        Kind.VCARDS: 1,
        Kind.PRIVATE_XML: 1,
        Kind.ROOMS: 2,
        Kind.AFFILIATIONS: 2,
        Kind.NICKS: 2,
        Kind.ROOM_ARCHIVE: 3,
        Kind.ACCOUNT_ARCHIVE: 2,
    }


def test_detection(tmp_path: Path) -> None:
    assert looks_like_dump(DUMP)
    other = tmp_path / "x.xml"
    other.write_text("<server-data/>")
    assert not looks_like_dump(other) and not looks_like_dump(tmp_path / "missing")


def test_a_dump_with_crlf_and_a_broken_middle_record_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    shutil.copy(DUMP, path)
    text = path.read_bytes().replace(b"\n", b"\r\n")
    text = text.replace(b'{passwd,{<<"alice">>', b'{passwd,{<<"alice">>,,', 1)
    path.write_bytes(text)
    accounts, problems = _read(MnesiaDumpSource(path), Kind.ACCOUNTS)
    assert [a.jid for a in accounts] == ["bob@example.org", "carol@example.org"]
    assert problems[0].where == "line 20" and "column 22: unexpected ','" in problems[0].text
