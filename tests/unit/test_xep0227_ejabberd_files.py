"""The reader on real ``ejabberdctl export_piefxis`` output of ejabberd 23.01 (Debian
23.01-1), made by the project's ejabberd fixture (branch h4-ejabberd) and kept in
tests/data/ejabberd_23.01: a main file including the host's file, one variant with plain
passwords and one with SCRAM-SHA-256 keys (which 23.01 writes base64-encoded twice).
population.json says what the fixture's clients put in (passwords included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.db_fixtures import verifies
from xmppd.migrate.model import Kind, Problem
from xmppd.migrate.xep0227 import Xep0227Source

DATA = Path(__file__).resolve().parents[1] / "data" / "ejabberd_23.01"
POPULATION = json.loads((DATA / "population.json").read_text())
VARIANTS = ("ejabberd-mnesia-plain.piefxis", "ejabberd-mnesia-scram-sha256.piefxis")


def source(variant: str) -> Xep0227Source:
    main = min((DATA / variant).glob("*.xml"), key=lambda p: len(p.name))  # the index file
    return Xep0227Source(main)


def records(src: Xep0227Source, kind: Kind) -> list[object]:
    got = list(src.read(kind))
    assert [p for p in got if isinstance(p, Problem)] == [], kind
    return got


@pytest.mark.parametrize("variant", VARIANTS)
def test_what_ejabberd_exported_is_what_its_users_made(variant: str) -> None:
    src = source(variant)
    accounts = {a.jid: a for a in records(src, Kind.ACCOUNTS)}  # type: ignore[attr-defined]
    assert sorted(accounts) == sorted(f"{u}@forum.test" for u in POPULATION["passwords"])
    for user, password in POPULATION["passwords"].items():
        account = accounts[f"{user}@forum.test"]
        if "plain" in variant:
            assert account.password == password
        else:  # the keys, decoded, are what a login with the old password checks
            assert account.password is None and account.scram.hash_name == "sha256"
            assert verifies(account.scram, password, "sha256")
            assert not verifies(account.scram, password + "x", "sha256")
    rosters = {
        (r.owner, r.contact): {  # type: ignore[attr-defined]
            "name": r.name,  # type: ignore[attr-defined]
            "subscription": r.subscription,  # type: ignore[attr-defined]
            "ask": "subscribe" if r.ask_out else "",  # type: ignore[attr-defined]
            "groups": list(r.groups),  # type: ignore[attr-defined]
        }
        for r in records(src, Kind.ROSTERS)
    }
    want = {
        (owner, contact): item
        for owner, items in POPULATION["rosters"].items()
        for contact, item in items.items()
    }
    assert rosters == want
    pending = {(p.owner, p.from_jid) for p in records(src, Kind.PENDING_SUBSCRIPTIONS)}  # type: ignore[attr-defined]
    assert pending == {(o, f) for o, froms in POPULATION["pending_in"].items() for f in froms}
    offline = records(src, Kind.OFFLINE)
    for owner, bodies in POPULATION["offline"].items():
        mine = [m.stanza for m in offline if m.owner == owner]  # type: ignore[attr-defined]
        assert len(mine) == len(bodies)
        assert all(f"<body>{body}</body>" in xml for body, xml in zip(bodies, mine, strict=True))
    cards = {c.owner: c.xml for c in records(src, Kind.VCARDS)}  # type: ignore[attr-defined]
    assert sorted(cards) == sorted(POPULATION["vcards"])
    for owner, fields in POPULATION["vcards"].items():
        assert f"<FN>{fields['FN']}</FN>" in cards[owner]
    private = {f"{p.owner} {p.namespace}" for p in records(src, Kind.PRIVATE_XML)}  # type: ignore[attr-defined]
    assert private == set(POPULATION["private"])
    # ejabberd's export has no rooms, nicks or archives (ejabberd_piefxis.erl writes users only)
    for kind in (Kind.ROOMS, Kind.AFFILIATIONS, Kind.NICKS, Kind.ROOM_ARCHIVE):
        assert records(src, kind) == []
