"""The accounts' archive store on SQLite: batched writes, paging both ways, ``with`` bare
and full, start/end, unknown RSM ids, the retention purge and the preferences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.db_fixtures import upgraded_database
from xmppd.mam.prefs import Prefs
from xmppd.mam.query import MamQuery
from xmppd.storage import Database
from xmppd.storage.account_mam import AccountArchiveStore, ArchiveRow
from xmppd.xml.errors import StanzaError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store() -> Iterator[AccountArchiveStore]:
    with upgraded_database("sqlite") as db:
        yield AccountArchiveStore(db)


def row(owner: str, i: int, partner: str = "bob@x/b") -> ArchiveRow:
    bare, _, resource = partner.partition("/")
    xml = f'<message xmlns="jabber:client"><body>{i}</body></message>'
    return ArchiveRow(owner, f"id{i}", bare, resource, i % 2 == 0, T0 + timedelta(minutes=i), xml)


def ids(store: AccountArchiveStore, owner: str, q: MamQuery) -> list[str]:
    return [m.stanza_id for m in store.query(owner, q).messages]


@pytest.fixture
def filled(store: AccountArchiveStore) -> AccountArchiveStore:
    rows = [row("alice@x", i, "bob@x/b" if i % 3 else "carol@x/c") for i in range(10)]
    rows.append(row("dave@x", 100))
    store.write_batch(rows)
    return store


def test_pages_forward_and_backward(filled: AccountArchiveStore) -> None:
    page = filled.query("alice@x", MamQuery(None, max=4))
    assert [m.stanza_id for m in page.messages] == ["id0", "id1", "id2", "id3"]
    assert page.complete is False and page.count is None
    assert page.messages[0].stamp == T0
    assert ids(filled, "alice@x", MamQuery(None, after="id3", max=4)) == [
        "id4",
        "id5",
        "id6",
        "id7",
    ]
    last = filled.query("alice@x", MamQuery(None, before="", max=4))
    assert [m.stanza_id for m in last.messages] == ["id6", "id7", "id8", "id9"]
    assert ids(filled, "alice@x", MamQuery(None, before="id6", max=4)) == [
        "id2",
        "id3",
        "id4",
        "id5",
    ]
    rest = filled.query("alice@x", MamQuery(None, after="id7", max=4))
    assert rest.complete is True and len(rest.messages) == 2


def test_with_bare_and_full_and_time_bounds(filled: AccountArchiveStore) -> None:
    assert ids(filled, "alice@x", MamQuery(None, with_="carol@x")) == ["id0", "id3", "id6", "id9"]
    assert ids(filled, "alice@x", MamQuery(None, with_="carol@x/c")) == ["id0", "id3", "id6", "id9"]
    assert ids(filled, "alice@x", MamQuery(None, with_="carol@x/other")) == []
    window = MamQuery(None, start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4))
    assert ids(filled, "alice@x", window) == ["id2", "id3", "id4"]
    late = MamQuery(None, start=T0 + timedelta(days=1))
    assert ids(filled, "alice@x", late) == []
    early = MamQuery(None, end=T0 - timedelta(days=1))
    assert ids(filled, "alice@x", early) == []


def test_archives_are_separate_and_unknown_ids_are_item_not_found(
    filled: AccountArchiveStore,
) -> None:
    assert ids(filled, "dave@x", MamQuery(None)) == ["id100"]
    for q in (MamQuery(None, after="id100"), MamQuery(None, before="nope")):
        with pytest.raises(StanzaError) as exc:
            filled.query("alice@x", q)
        assert exc.value.condition == "item-not-found"


def test_retention_purge(filled: AccountArchiveStore) -> None:
    assert filled.purge_before(T0 - timedelta(days=1)) == 0
    assert filled.purge_before(T0 + timedelta(minutes=5), chunk=2) == 5
    assert ids(filled, "alice@x", MamQuery(None)) == ["id5", "id6", "id7", "id8", "id9"]
    assert ids(filled, "dave@x", MamQuery(None)) == ["id100"]
    assert filled.newest_stamp() == T0 + timedelta(minutes=100)


def test_prefs_are_stored_and_replaced(store: AccountArchiveStore) -> None:
    assert store.load_prefs() == {}
    store.save_prefs("alice@x", Prefs("never", frozenset({"bob@x"}), frozenset()))
    store.save_prefs("alice@x", Prefs("roster", frozenset(), frozenset({"spam@x"})))
    assert store.load_prefs() == {"alice@x": Prefs("roster", frozenset(), frozenset({"spam@x"}))}


def test_an_empty_batch_writes_nothing(store: AccountArchiveStore) -> None:
    store.write_batch([])
    assert store.newest_stamp() is None
    assert isinstance(store.db, Database)


def test_extended_id_filters_and_bounds(filled: AccountArchiveStore) -> None:
    q = MamQuery(None, after_id="id2", before_id="id6")
    assert ids(filled, "alice@x", q) == ["id3", "id4", "id5"]
    assert ids(filled, "alice@x", MamQuery(None, ids=("id7", "id1"))) == ["id1", "id7"]
    for bad in (MamQuery(None, ids=("id1", "id100")), MamQuery(None, after_id="nope")):
        with pytest.raises(StanzaError) as exc:
            filled.query("alice@x", bad)
        assert exc.value.condition == "item-not-found"
    assert [i for i, _ in filled.bounds("alice@x")] == ["id0", "id9"]
    assert filled.bounds("nobody@x") == []
