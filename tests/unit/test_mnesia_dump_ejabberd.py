"""Real ``ejabberdctl dump`` files of an ejabberd 23.01 (Debian's), read back.

tests/data/ejabberd-2301-mnesia-*.dump.gz are dumps made by the ejabberd test fixture
(default Mnesia storage, ``auth_password_format: plain`` and ``scram`` with
``auth_scram_hash: sha256``) after it populated the server through its own interfaces with
slixmpp clients; each ``.population.json`` beside it is what that run put in (throwaway
test passwords, rosters, rooms, nicks, archives with ejabberd's ids). Gzipped: 210 KB each
as text.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from xmppd.migrate.mnesia_dump import MnesiaDumpSource
from xmppd.migrate.model import Kind, Problem, ScramKeys

DATA = Path(__file__).parent.parent / "data"
C = "{jabber:client}"
EPOCH = datetime(1970, 1, 1)


@pytest.fixture(scope="module", params=["plain", "scram-sha256"])
def dump(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    name = f"ejabberd-2301-mnesia-{request.param}"
    path = tmp_path_factory.mktemp("dump") / f"{name}.dump"
    path.write_bytes(gzip.decompress((DATA / f"{name}.dump.gz").read_bytes()))
    population = json.loads((DATA / f"{name}.population.json").read_text())
    return request.param, MnesiaDumpSource(path), population


def _records(source: MnesiaDumpSource, kind: Kind, problems: int = 0) -> list:
    items = list(source.read(kind))
    found = [i for i in items if isinstance(i, Problem)]
    assert len(found) == problems, found
    return [i for i in items if not isinstance(i, Problem)]


def _verifies(password: str, keys: ScramKeys) -> bool:
    salted = hashlib.pbkdf2_hmac(keys.hash_name, password.encode(), keys.salt, keys.iterations)
    client_key = hmac.digest(salted, b"Client Key", keys.hash_name)
    stored = hashlib.new(keys.hash_name, client_key).digest()
    return hmac.compare_digest(stored, keys.stored_key)


def test_accounts_with_their_old_passwords(dump) -> None:  # type: ignore[no-untyped-def]
    storage, source, population = dump
    # caps_features, last_activity, vcard_search: listed as not imported
    accounts = _records(source, Kind.ACCOUNTS, problems=3)
    expected = {f"{user}@forum.test": pw for user, pw in population["passwords"].items()}
    assert sorted(a.jid for a in accounts) == sorted(expected)
    for account in accounts:
        if storage == "plain":
            assert account.password == expected[account.jid] and account.scram is None
        else:
            assert account.password is None and account.scram is not None
            assert account.scram.hash_name == "sha256"
            assert _verifies(expected[account.jid], account.scram)
            assert not _verifies(expected[account.jid] + "x", account.scram)


def test_rosters_and_pending_requests(dump) -> None:  # type: ignore[no-untyped-def]
    _, source, population = dump
    got = {
        (i.owner, i.contact): (i.name, i.subscription, i.ask_out, sorted(i.groups))
        for i in _records(source, Kind.ROSTERS)
    }
    want = {
        (owner, contact): (
            e["name"],
            e["subscription"],
            e["ask"] == "subscribe",
            sorted(e["groups"]),
        )
        for owner, items in population["rosters"].items()
        for contact, e in items.items()
    }
    assert got == want
    pending = defaultdict(list)
    for p in _records(source, Kind.PENDING_SUBSCRIPTIONS):
        pending[p.owner].append(p.from_jid)
        assert etree.fromstring(p.stanza).get("type") == "subscribe"
    assert pending == population["pending_in"]


def test_offline_vcards_private(dump) -> None:  # type: ignore[no-untyped-def]
    _, source, population = dump
    offline = defaultdict(list)
    for m in sorted(_records(source, Kind.OFFLINE), key=lambda m: m.stamp):
        el = etree.fromstring(m.stanza)
        assert el.find("{urn:xmpp:delay}delay") is not None
        offline[m.owner].append(el.findtext(C + "body"))
    assert offline == population["offline"]
    cards = {}
    for v in _records(source, Kind.VCARDS):
        cards[v.owner] = {child.tag.split("}")[1]: child.text for child in etree.fromstring(v.xml)}
    assert cards == population["vcards"]
    private = {
        f"{p.owner} {p.namespace}": etree.tostring(etree.fromstring(p.xml), method="c14n")
        for p in _records(source, Kind.PRIVATE_XML)
    }
    assert private == {
        key: etree.tostring(etree.fromstring(xml), method="c14n")
        for key, xml in population["private"].items()
    }


def test_rooms_affiliations_nicks(dump) -> None:  # type: ignore[no-untyped-def]
    _, source, population = dump
    rooms = {r.jid: r for r in _records(source, Kind.ROOMS, problems=2)}  # roles not kept
    assert sorted(rooms) == sorted(population["rooms"])
    for jid, want in population["rooms"].items():
        assert {name: getattr(rooms[jid], name) for name in want} == want, jid
    affiliations = defaultdict(dict)
    for a in _records(source, Kind.AFFILIATIONS):
        affiliations[a.room][a.jid] = [a.affiliation, a.reason]
    assert affiliations == population["affiliations"]
    nicks = _records(source, Kind.NICKS)
    assert {n.room for n in nicks} == {"conference.forum.test"}
    assert {n.jid: n.nick for n in nicks} == population["nicks"]


def test_archives_keep_ejabberds_ids(dump) -> None:  # type: ignore[no-untyped-def]
    _, source, population = dump
    rooms = defaultdict(list)
    for m in _records(source, Kind.ROOM_ARCHIVE):
        el = etree.fromstring(m.stanza)
        assert el.get("from") == f"{m.room}/{m.nick}" and el.get("type") == "groupchat"
        assert m.sender == f"{m.nick.lower()}@forum.test"
        assert m.stanza_id == str((m.stamp - EPOCH) // timedelta(microseconds=1))
        rooms[m.room].append([m.stanza_id, m.nick, el.findtext(C + "body") or ""])
    assert {room: sorted(msgs) for room, msgs in rooms.items()} == population["room_archive"]
    alice = sorted(
        [m.stanza_id, etree.fromstring(m.stanza).findtext(C + "body")]
        for m in _records(source, Kind.ACCOUNT_ARCHIVE)
        if m.owner == "alice@forum.test"
    )
    assert alice == population["account_archive"]["alice@forum.test"]
    assert source.estimate(Kind.ROOM_ARCHIVE) == sum(map(len, rooms.values()))
